"""World models behind one seam (see :mod:`.base`).

Exact physics lives in :mod:`.mujoco_dynamics` (imported on demand: it needs mujoco).
"""

from .base import Rollout, WorldModel
from .registry import (
    LatentState,
    LearnedModel,
    ModelSpec,
    available_models,
    get_model_class,
    make_model,
    model_from_config,
    register_model,
)

__all__ = [
    "LatentState",
    "LearnedModel",
    "ModelSpec",
    "Rollout",
    "WorldModel",
    "available_models",
    "get_model_class",
    "make_model",
    "model_from_config",
    "register_model",
]

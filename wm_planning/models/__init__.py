"""World models behind one seam (see :mod:`.base`).

Exact physics lives in :mod:`.mujoco_dynamics` (imported on demand: it needs mujoco).
"""

from .base import Rollout, WorldModel

__all__ = ["Rollout", "WorldModel"]

"""Batched sampling and gradient planners behind one seam (see :mod:`.base`).

Importing this package registers every planner module listed below: ``cem``, ``icem``, ``mppi``,
``gradient`` and ``random_shooting``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import cem, gradient, icem, mppi, random_shooting
from .base import Objective, Planner, PlannerConfig, PlanResult, available, get, make, register
from .cem import CEM, CEMConfig
from .gradient import Gradient, GradientConfig
from .icem import ICEM, ICEMConfig
from .mppi import MPPI, MPPIConfig
from .random_shooting import RandomShooting, RandomShootingConfig


def from_config(cfg: Mapping[str, Any], **overrides: Any) -> Planner:
    """Build a planner from a mapping such as ``configs/planner/<option>.yaml`` (a dict or an
    OmegaConf ``DictConfig``): key ``name`` picks the registered planner, every other key is an
    option. ``overrides`` (e.g. ``horizon``, ``action_low``, ``action_high`` from the task) win."""
    options = {str(k): v for k, v in cfg.items()}
    options.update(overrides)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(
            f"planner config needs a string 'name' (one of {available()}), got {name!r}"
        )
    missing = [k for k in ("horizon", "action_low", "action_high") if options.get(k) is None]
    if missing:
        raise ValueError(
            f"planner config {name!r} lacks {missing}; pass them as overrides "
            f"(from_config(cfg, horizon=..., action_low=..., action_high=...))"
        )
    return make(name, **options)


__all__ = [
    "CEM",
    "ICEM",
    "MPPI",
    "CEMConfig",
    "Gradient",
    "GradientConfig",
    "ICEMConfig",
    "MPPIConfig",
    "Objective",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "RandomShooting",
    "RandomShootingConfig",
    "available",
    "cem",
    "from_config",
    "get",
    "gradient",
    "icem",
    "make",
    "mppi",
    "random_shooting",
    "register",
]

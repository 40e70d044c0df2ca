"""Batched sampling and gradient planners behind one seam (see :mod:`.base`).

Importing this package registers every planner module listed below.
"""

from .base import Objective, Planner, PlannerConfig, PlanResult, available, get, make, register

__all__ = [
    "Objective",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "available",
    "get",
    "make",
    "register",
]

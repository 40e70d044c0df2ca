"""Goal costs for visual world models, registered in :mod:`wm_planning.costs`' registry.

* ``dino_goal``: DINO-WM's objective, MSE between predicted patch tokens and the goal image's
  tokens (final step, or every step weighted towards the end) plus ``proprio_weight`` times the
  MSE of the predicted proprio embedding to the goal's.
* ``designated_pixel``: expected distance, under the model's predicted pixel distributions, of
  each designated pixel to where the user wants it (Finn & Levine 2017; Ebert et al. 2018).

Importing this module registers both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from wm_planning.costs import Cost, reduce_time, register
from wm_planning.models.base import Rollout


@register("dino_goal")
@dataclass
class DinoGoalCost(Cost):
    """goal: ``N·D`` goal tokens (flattened); goal_proprio: ``Ep`` embedding or None."""

    goal: Tensor
    goal_proprio: Tensor | None = None
    proprio_weight: float = 0.0
    every_step: bool = False
    requires: ClassVar[frozenset[str]] = frozenset({"latents"})

    def needs(self) -> frozenset[str]:
        return self.requires | ({"proprio_latents"} if self.proprio_weight else frozenset())

    def __call__(self, rollout: Rollout) -> Tensor:
        z = rollout.get("latents")  # B×H×(N·D)
        d = (z - self.goal.to(z).reshape(1, 1, -1)).pow(2).mean(-1)
        if self.proprio_weight and self.goal_proprio is not None:
            p = rollout.get("proprio_latents")  # B×H×Ep
            dp = (p - self.goal_proprio.to(p).reshape(1, 1, -1)).pow(2).mean(-1)
            d = d + self.proprio_weight * dp
        return reduce_time(d, self.every_step)


def pixel_grid_distance(targets: Tensor, size: tuple[int, int]) -> Tensor:
    """``P×2`` target (row, col) -> ``P×H×W`` Euclidean distance (pixels) of every pixel to it."""
    rows = torch.arange(size[0], dtype=targets.dtype, device=targets.device)
    cols = torch.arange(size[1], dtype=targets.dtype, device=targets.device)
    dr = rows[None, :, None] - targets[:, 0, None, None]
    dc = cols[None, None, :] - targets[:, 1, None, None]
    return (dr.pow(2) + dc.pow(2)).sqrt()


@register("designated_pixel")
@dataclass
class DesignatedPixelCost(Cost):
    """targets: ``P×2`` (row, col) where each designated pixel should go; cost =
    ``mean_p Σ_xy P_p(x, y) · ‖(x, y) − target_p‖`` at the final step (or every step, weighted
    towards the end)."""

    targets: Tensor
    every_step: bool = False
    requires: ClassVar[frozenset[str]] = frozenset({"pixel_dists"})

    def __call__(self, rollout: Rollout) -> Tensor:
        dists = rollout.get("pixel_dists")  # B×H×P×h×w
        if dists.shape[2] != self.targets.shape[0]:
            raise ValueError(
                f"{dists.shape[2]} designated pixels but {self.targets.shape[0]} targets"
            )
        grid = pixel_grid_distance(self.targets.to(dists), tuple(dists.shape[-2:]))  # type: ignore[arg-type]
        expected = (dists * grid).sum((-2, -1)).mean(-1)  # B×H
        return reduce_time(expected, self.every_step)


@singledispatch
def goal_cost(
    model: Any, goal_image: np.ndarray, goal_proprio: np.ndarray | None = None, **options: Any
) -> Cost:
    """The goal-image cost a model plans with (one registration per model class). ``options``:
    the cost's own (DINO-WM: ``every_step``, ``proprio_weight``, which needs ``goal_proprio``)."""
    raise TypeError(f"no goal-image cost registered for {type(model).__name__}")


def _register_goal_costs() -> None:
    from wm_planning.models.dino_wm import DinoWM, pixels_to_float
    from wm_planning.models.visual_foresight import CDNA

    @goal_cost.register(DinoWM)
    def _(model: DinoWM, goal_image: np.ndarray, goal_proprio: Any = None, **options: Any) -> Cost:
        if float(options.get("proprio_weight", 0.0)) and goal_proprio is None:
            raise ValueError(
                "proprio_weight > 0 needs the goal's proprioception (a goal from the simulator, "
                "not an image file)"
            )
        goal, gp = model.goal_latent(goal_image, goal_proprio)
        return DinoGoalCost(
            goal=goal, goal_proprio=gp if goal_proprio is not None else None, **options
        )

    @goal_cost.register(CDNA)
    def _(model: CDNA, goal_image: np.ndarray, goal_proprio: Any = None, **options: Any) -> Cost:
        from wm_planning.costs import GoalPixelCost

        if float(options.pop("proprio_weight", 0.0)):
            raise ValueError("visual foresight predicts pixels only: proprio_weight must be 0")
        return GoalPixelCost(goal=pixels_to_float(goal_image), **options)


_register_goal_costs()

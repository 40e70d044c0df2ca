"""Random shooting: score uniformly drawn sequences once and keep the best. The baseline every
other planner has to beat at the same number of objective evaluations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Objective, Planner, PlannerConfig, PlanResult, PlanStart, evaluate, register
from .cem import split_prior, with_prior
from .noise import IterationLog


@dataclass(frozen=True)
class RandomShootingConfig(PlannerConfig):
    """num_samples: sequences scored, *including* any prior trajectories.
    local_width: ``None`` draws uniformly from the whole box; a fraction ``w`` draws from
        ``[m - w·half, m + w·half] ∩ box`` around the warm start ``m`` (the box centre without
        one), with ``half = (high - low) / 2``.
    """

    num_samples: int = 1000
    local_width: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.local_width is not None and not (
            math.isfinite(self.local_width) and self.local_width > 0
        ):
            raise ValueError(f"local_width must be None or > 0, got {self.local_width}")


@register("random_shooting")
class RandomShooting(Planner):
    Config = RandomShootingConfig
    config: RandomShootingConfig

    def _plan(
        self,
        objective: Objective,
        start: PlanStart,
        *,
        generator: torch.Generator,
        carry: dict[str, Tensor],
    ) -> PlanResult:
        cfg = self.config
        device, low, high = start.device, start.low, start.high
        h, a = cfg.horizon, cfg.action_dim
        prior = start.prior
        _, num_samples = split_prior(prior, cfg.num_samples)
        if cfg.local_width is None:
            lo, hi = low.expand(h, a), high.expand(h, a)
        else:
            centre = start.mean
            width = cfg.local_width * start.half
            lo = torch.maximum(centre - width, low)
            hi = torch.minimum(centre + width, high)
        uniform = torch.rand(num_samples, h, a, generator=generator, device=device)
        samples = with_prior(prior, torch.addcmul(lo, hi - lo, uniform))
        costs = evaluate(objective, samples)
        log = IterationLog()
        log.record(costs, ((hi - lo) / math.sqrt(12.0)))  # std of the uniform draw
        best = torch.argmin(costs)
        return PlanResult(samples[best], costs[best], log.info(device))

"""Cross-entropy method (Rubinstein 1999; as used by PlaNet, Hafner et al. 2019).

Each iteration draws Gaussian sequences around the mean, clamps them to the action box, scores
them with the objective and refits a diagonal Gaussian (``H×A`` mean and std) to the ``elites``
lowest-cost sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Objective, Planner, PlannerConfig, PlanResult, PlanStart, evaluate, register
from .noise import IterationLog, gaussian


@dataclass(frozen=True)
class CEMConfig(PlannerConfig):
    """population: sequences scored per iteration, *including* any prior trajectories (so the
        objective always sees the same batch size ``B = population``).
    elites: lowest-cost sequences the Gaussian is refitted to.
    init_std, min_std: sampling std as a fraction of the box half-width ``(high - low) / 2``.
    alpha: weight of the previous mean/std in each refit (momentum):
        ``mean <- alpha * mean + (1 - alpha) * elite_mean``; 0 refits from scratch.
    return_best: return the lowest-cost sequence seen over all iterations instead of the final
        mean (the mean is then not evaluated again).
    """

    population: int = 1000
    elites: int = 100
    iterations: int = 10
    init_std: float = 1.0
    min_std: float = 0.0
    alpha: float = 0.0
    return_best: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.population < 2:
            raise ValueError(f"population must be >= 2, got {self.population}")
        if not 1 <= self.elites <= self.population:
            raise ValueError(
                f"elites must be in [1, population={self.population}], got {self.elites}"
            )
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if not 0 <= self.min_std <= self.init_std:
            raise ValueError(f"min_std must be in [0, init_std], got {self.min_std}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")


def split_prior(prior: Tensor | None, batch: int, minimum: int = 1) -> tuple[int, int]:
    """``(P, batch - P)``: prior count and the number of sampled sequences left in a batch."""
    num_prior = 0 if prior is None else prior.shape[0]
    if batch - num_prior < minimum:
        raise ValueError(
            f"{num_prior} prior trajectories leave fewer than {minimum} sampled sequence(s) in a "
            f"batch of {batch}; raise the population / num_samples or pass fewer"
        )
    return num_prior, batch - num_prior


def with_prior(prior: Tensor | None, samples: Tensor) -> Tensor:
    """Prior trajectories first, then samples: ``(P+N)×H×A``."""
    return samples if prior is None else torch.cat([prior, samples])


@register("cem")
class CEM(Planner):
    Config = CEMConfig
    config: CEMConfig

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
        half = start.half
        h, a = cfg.horizon, cfg.action_dim
        prior = start.prior
        _, num_samples = split_prior(prior, cfg.population)

        mean = start.mean
        std = (cfg.init_std * half).expand(h, a)
        min_std = cfg.min_std * half
        best_cost = torch.full((), torch.inf, device=device)
        best = mean
        log = IterationLog()
        for _ in range(cfg.iterations):
            noise = gaussian(num_samples, h, a, generator)
            samples = with_prior(prior, torch.addcmul(mean, std, noise).clamp_(low, high))
            costs = evaluate(objective, samples)
            log.record(costs, std)
            elite_costs, idx = torch.topk(costs, cfg.elites, largest=False, sorted=True)
            elites = samples[idx]  # K×H×A
            if cfg.return_best:
                better = elite_costs[0] < best_cost
                best = torch.where(better, elites[0], best)
                best_cost = torch.minimum(elite_costs[0], best_cost)
            new_mean = elites.mean(0)
            new_std = elites.std(0, correction=0)
            if cfg.alpha > 0:
                new_mean = torch.lerp(new_mean, mean, cfg.alpha)
                new_std = torch.lerp(new_std, std, cfg.alpha)
            mean, std = new_mean, torch.maximum(new_std, min_std)

        if cfg.return_best:
            return PlanResult(best, best_cost, log.info(device))
        cost = evaluate(objective, mean.unsqueeze(0))[0]
        log.count(1)
        return PlanResult(mean, cost, log.info(device))

"""Improved CEM (Pinneri et al., CoRL 2020): CEM with colored noise, a shrinking population and
elites that survive across iterations and, through ``carry``, across control steps.

Per iteration ``i`` (0-based):

* ``N_i = max(floor(population · decay^-i), 2·elites)`` fresh samples
  ``clamp(mean + std ⊙ ε)`` with ε colored noise (PSD ∝ 1/f^beta along time, unit variance);
* plus the prior trajectories, plus the kept elites: at ``i = 0`` those in ``carry['elites']``
  (the previous step's, already shifted by the controller), at ``i > 0`` the best
  ``keep_elites · elites`` of the previous iteration;
* plus, at the last iteration, the mean itself;
* refit mean/std to the ``elites`` lowest costs with smoothing ``alpha``.

The best sequence seen over all iterations is returned (its cost was already evaluated), and the
best ``keep_elites · elites`` of the last iteration go into ``carry['elites']`` (``K'×H×A``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Objective, Planner, PlannerConfig, PlanResult, PlanStart, evaluate, register
from .noise import ColoredNoise, IterationLog


@dataclass(frozen=True)
class ICEMConfig(PlannerConfig):
    """population: fresh samples at the first iteration (prior and kept elites come on top).
    elites: ``K``, lowest-cost sequences the Gaussian is refitted to.
    population_decay: ``gamma >= 1``; iteration ``i`` draws ``max(population·gamma^-i, 2K)``.
    noise_beta: colored-noise exponent (0 white, 1 pink, 2 red).
    keep_elites: fraction of ``K`` carried to the next iteration and to the next control step.
    init_std, min_std: fractions of the box half-width ``(high - low) / 2``.
    alpha: weight of the previous mean/std in each refit (momentum).
    """

    population: int = 300
    elites: int = 30
    iterations: int = 4
    population_decay: float = 1.25
    noise_beta: float = 2.0
    keep_elites: float = 0.3
    init_std: float = 0.5
    min_std: float = 0.0
    alpha: float = 0.1

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
        if not (math.isfinite(self.population_decay) and self.population_decay >= 1):
            raise ValueError(f"population_decay must be >= 1, got {self.population_decay}")
        if not (math.isfinite(self.noise_beta) and self.noise_beta >= 0):
            raise ValueError(f"noise_beta must be >= 0, got {self.noise_beta}")
        if not 0 <= self.keep_elites <= 1:
            raise ValueError(f"keep_elites must be in [0, 1], got {self.keep_elites}")
        if not self.init_std > 0:
            raise ValueError(f"init_std must be > 0, got {self.init_std}")
        if not 0 <= self.min_std <= self.init_std:
            raise ValueError(f"min_std must be in [0, init_std], got {self.min_std}")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")

    @property
    def num_kept(self) -> int:
        """Elites kept across iterations and steps."""
        return int(self.keep_elites * self.elites)

    def samples_at(self, iteration: int) -> int:
        """Fresh samples drawn at ``iteration`` (0-based)."""
        decayed = math.floor(self.population * self.population_decay**-iteration)
        return max(decayed, 2 * self.elites)


@register("icem")
class ICEM(Planner):
    Config = ICEMConfig
    config: ICEMConfig

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
        noise = ColoredNoise(cfg.noise_beta, h, device)

        kept = self._carried_elites(carry, low, high)
        mean = start.mean
        std = (cfg.init_std * half).expand(h, a)
        min_std = cfg.min_std * half
        best_cost = torch.full((), torch.inf, device=device)
        best = mean
        log = IterationLog()
        for i in range(cfg.iterations):
            eps = noise.sample(cfg.samples_at(i), a, generator)
            parts = [torch.addcmul(mean, std, eps).clamp_(low, high)]
            if prior is not None:
                parts.append(prior)
            if kept is not None:
                parts.append(kept)
            if i == cfg.iterations - 1:
                parts.append(mean.unsqueeze(0))
            samples = torch.cat(parts)
            costs = evaluate(objective, samples)
            log.record(costs, std)
            elite_costs, idx = torch.topk(costs, cfg.elites, largest=False, sorted=True)
            elites = samples[idx]  # K×H×A, best first
            better = elite_costs[0] < best_cost
            best = torch.where(better, elites[0], best)
            best_cost = torch.minimum(elite_costs[0], best_cost)
            kept = elites[: cfg.num_kept] if cfg.num_kept > 0 else None
            new_mean = torch.lerp(elites.mean(0), mean, cfg.alpha)
            new_std = torch.lerp(elites.std(0, correction=0), std, cfg.alpha)
            mean, std = new_mean, torch.maximum(new_std, min_std)

        out_carry = {"elites": kept.clone()} if kept is not None else {}
        return PlanResult(best, best_cost, log.info(device), out_carry)

    def _carried_elites(
        self, carry: dict[str, Tensor] | None, low: Tensor, high: Tensor
    ) -> Tensor | None:
        """The previous step's elites ``K'×H×A`` from ``carry``, clamped, or ``None``."""
        if not carry or "elites" not in carry or self.config.num_kept == 0:
            return None
        elites = carry["elites"]
        h, a = self.config.horizon, self.config.action_dim
        if elites.dim() != 3 or elites.shape[1:] != (h, a):
            raise ValueError(
                f"carry['elites'] must be K×H×A with H×A = {(h, a)}, got {tuple(elites.shape)}"
            )
        return elites[: self.config.num_kept].to(low.device, torch.float32).clamp(low, high)

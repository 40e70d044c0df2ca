"""Model-predictive path integral control (Williams et al. 2017), in the iterated, elite-filtered
form TD-MPC2 plans with (Hansen et al. 2024).

Each iteration samples Gaussian sequences around the mean, scores them, keeps the ``num_elites``
lowest-cost ones (or all samples when ``num_elites`` is ``None``: classic MPPI) and sets

    w_j ∝ exp(-(c_j - min_k c_k) / temperature)      over the kept samples,
    mean <- Σ_j w_j u_j,     std <- sqrt(Σ_j w_j (u_j - mean)^2) clamped to [min_std, max_std].

Temperature convention: ``temperature`` *divides* the cost, as in classic MPPI's λ and
pytorch_mppi's ``lambda_``. TD-MPC2's ``temperature`` *multiplies* the value
(``exp(temperature * (v - v_max))``), so TD-MPC2's ``temperature: 0.5`` equals ``2.0`` here (see
``configs/planner/tdmpc2_mppi.yaml``). Costs are not rescaled, so the right temperature depends on
the objective's scale.

Unlike pytorch_mppi there is no control-cost term ``λ uᵀΣ⁻¹ε``; put any action penalty in the
objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .base import Objective, Planner, PlannerConfig, PlanResult, PlanStart, evaluate, register
from .cem import split_prior, with_prior
from .noise import IterationLog, gaussian

_FLOAT_MAX = torch.finfo(torch.float32).max


def path_integral_weights(costs: Tensor, temperature: float) -> Tensor:
    """Normalised weights ``B`` ∝ ``exp(-(c - min c) / temperature)``; infinite costs get weight 0
    (and if every cost is infinite the weights are uniform rather than NaN)."""
    finite = torch.nan_to_num(costs, posinf=_FLOAT_MAX, neginf=-_FLOAT_MAX)
    return torch.softmax((finite.min() - finite) / temperature, dim=0)


@dataclass(frozen=True)
class MPPIConfig(PlannerConfig):
    """num_samples: sequences scored per iteration *including* prior trajectories (TD-MPC2: 512
        with 24 policy rollouts), so the objective always sees ``B = num_samples``.
    num_elites: how many lowest-cost samples get weights; ``None`` weights all (classic MPPI).
    temperature: λ in ``exp(-(c - c_min) / λ)``; lower is greedier.
    init_std, min_std, max_std: sampling std as fractions of the box half-width
        ``(high - low) / 2``; for the usual ``[-1, 1]`` box they are absolute, as in TD-MPC2.
    update_std: refit the std to the weighted samples each iteration (TD-MPC2); ``False`` keeps
        ``init_std`` (classic MPPI).
    momentum: weight of the previous mean in each update, ``mean <- m·mean + (1-m)·new``.
    select: ``"mean"`` returns the weighted mean (evaluated once more for an honest cost);
        ``"sample"`` returns one kept sample of the last iteration drawn with probability ``w_j``
        (TD-MPC2), via the Gumbel-max trick on the generator (no host sync).
    carry_std: put the final std (``H×A``) in ``carry`` and start the next plan from it (clamped
        to ``[min_std, max_std]``) instead of ``init_std``.
    """

    num_samples: int = 512
    num_elites: int | None = 64
    iterations: int = 6
    temperature: float = 1.0
    init_std: float = 1.0
    min_std: float = 0.05
    max_std: float = 2.0
    update_std: bool = True
    momentum: float = 0.0
    select: Literal["mean", "sample"] = "mean"
    carry_std: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.num_elites is not None and not 1 <= self.num_elites <= self.num_samples:
            raise ValueError(
                f"num_elites must be None or in [1, num_samples={self.num_samples}], "
                f"got {self.num_elites}"
            )
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.min_std <= self.max_std:
            raise ValueError(
                f"need 0 <= min_std <= max_std, got min_std={self.min_std}, max_std={self.max_std}"
            )
        if not (self.init_std > 0 and self.min_std <= self.init_std <= self.max_std):
            raise ValueError(
                f"init_std must be > 0 and within [min_std, max_std] = "
                f"[{self.min_std}, {self.max_std}], got {self.init_std}"
            )
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.select not in ("mean", "sample"):
            raise ValueError(f"select must be 'mean' or 'sample', got {self.select!r}")


@register("mppi")
class MPPI(Planner):
    Config = MPPIConfig
    config: MPPIConfig

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
        _, num_samples = split_prior(prior, cfg.num_samples)
        min_std, max_std = cfg.min_std * half, cfg.max_std * half

        mean = start.mean
        if cfg.carry_std and carry and "std" in carry:
            if carry["std"].shape != (h, a):
                raise ValueError(
                    f"carry['std'] must be H×A = {(h, a)}, got {tuple(carry['std'].shape)}"
                )
            std = carry["std"].to(device, torch.float32).clamp(min_std, max_std)
        else:
            std = (cfg.init_std * half).expand(h, a)

        log = IterationLog()
        for _ in range(cfg.iterations):
            noise = gaussian(num_samples, h, a, generator)
            samples = with_prior(prior, torch.addcmul(mean, std, noise).clamp_(low, high))
            costs = evaluate(objective, samples)
            log.record(costs, std)
            if cfg.num_elites is None:
                kept, kept_costs = samples, costs
            else:
                kept_costs, idx = torch.topk(costs, cfg.num_elites, largest=False, sorted=False)
                kept = samples[idx]  # K×H×A
            weights = path_integral_weights(kept_costs, cfg.temperature)
            new_mean = torch.einsum("k,kha->ha", weights, kept)
            if cfg.update_std:
                var = torch.einsum("k,kha->ha", weights, (kept - new_mean).square())
                std = var.sqrt().clamp(min_std, max_std)
            if cfg.momentum > 0:
                new_mean = torch.lerp(new_mean, mean, cfg.momentum)
            mean = new_mean

        out_carry = {"std": std.clone()} if cfg.carry_std else {}
        if cfg.select == "sample":
            # Gumbel-max: argmax(log w + G) is a draw from w, with no multinomial sync.
            uniform = torch.rand(weights.shape, generator=generator, device=device)
            pick = torch.argmax(weights.log() - torch.log(-torch.log(uniform.clamp_min(1e-20))))
            return PlanResult(kept[pick], kept_costs[pick], log.info(device), out_carry)
        cost = evaluate(objective, mean.unsqueeze(0))[0]
        log.count(1)
        return PlanResult(mean, cost, log.info(device), out_carry)

"""Gradient-based shooting: optimise ``num_starts`` action sequences at once (one objective
batch ``B = num_starts``) with Adam or SGD by back-propagating through a differentiable objective
(e.g. a world-model rollout), optionally after a few CEM iterations to find a good basin.

Bounds, two ways (``bounds_method``):

* ``"clamp"`` (projected gradient): the parameters *are* the actions; after every optimiser step
  they are clamped to the box. Actions on the boundary stay reachable; ``lr`` is in action units.
* ``"tanh"``: actions are ``centre + half · tanh(z)``; the optimiser works on unconstrained ``z``.
  Smooth, never leaves the box, but gradients vanish near the bounds; ``lr`` is in ``z`` units.

The result is the lowest-cost iterate seen over all starts and iterations (its cost was evaluated
at exactly those actions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .base import Objective, Planner, PlannerConfig, PlanResult, PlanStart, evaluate, register
from .cem import CEM, CEMConfig
from .noise import IterationLog, gaussian

Step = Callable[[Tensor], None]
"""Applies one update to the parameter it was built for, given its gradient (under no_grad)."""


def _sgd(param: Tensor, lr: float) -> Step:
    def step(grad: Tensor) -> None:
        param.sub_(grad, alpha=lr)

    return step


def _adam(param: Tensor, lr: float, beta1: float = 0.9, beta2: float = 0.999) -> Step:
    """Adam (Kingma & Ba 2015) with bias correction, as torch.optim.Adam computes it. Written out
    because building a torch.optim optimizer imports torch._dynamo (seconds on a first plan) and
    its per-step bookkeeping costs more than these five kernels."""
    m, v = torch.zeros_like(param), torch.zeros_like(param)
    t = 0

    def step(grad: Tensor) -> None:
        nonlocal t
        t += 1
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (v / (1 - beta2**t)).sqrt_().add_(1e-8)
        param.addcdiv_(m, denom, value=-lr / (1 - beta1**t))

    return step


_OPTIMIZERS: dict[str, Callable[[Tensor, float], Step]] = {"adam": _adam, "sgd": _sgd}
_TANH_EDGE = 1 - 1e-6  # atanh(±1) is infinite: start just inside the box


@dataclass(frozen=True)
class GradientConfig(PlannerConfig):
    """iterations: optimiser steps. lr: step size (see the module docstring for its units).
    optimizer: ``"adam"`` or ``"sgd"``. num_starts: parallel restarts; start 0 is the warm start
        itself, then the prior trajectories (if any), then random perturbations of the warm start
        with std ``init_std`` (fraction of the box half-width).
    bounds_method: ``"clamp"`` (projection) or ``"tanh"`` (squashing).
    cem_init_iterations: if > 0, run that many CEM iterations (``cem_population``,
        ``cem_elites``, std ``init_std``) first and start from the CEM mean.
    """

    iterations: int = 100
    lr: float = 0.05
    optimizer: Literal["adam", "sgd"] = "adam"
    num_starts: int = 8
    init_std: float = 0.3
    bounds_method: Literal["clamp", "tanh"] = "clamp"
    cem_init_iterations: int = 0
    cem_population: int = 256
    cem_elites: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {sorted(_OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.num_starts < 1:
            raise ValueError(f"num_starts must be >= 1, got {self.num_starts}")
        if not self.init_std >= 0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")
        if self.bounds_method not in ("clamp", "tanh"):
            raise ValueError(f"bounds_method must be 'clamp' or 'tanh', got {self.bounds_method!r}")
        if self.cem_init_iterations < 0:
            raise ValueError(f"cem_init_iterations must be >= 0, got {self.cem_init_iterations}")
        if self.cem_init_iterations > 0 and not 1 <= self.cem_elites <= self.cem_population:
            raise ValueError(
                f"need 1 <= cem_elites <= cem_population, got {self.cem_elites} and "
                f"{self.cem_population}"
            )


@register("gradient")
class Gradient(Planner):
    Config = GradientConfig
    config: GradientConfig
    needs_gradients = True

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
        centre, half = (low + high) / 2, start.half
        h, a = cfg.horizon, cfg.action_dim
        prior = start.prior
        mean = start.mean
        info: dict[str, Tensor] = {}
        extra_evals = 0
        if cfg.cem_init_iterations > 0:
            cem = CEM(
                CEMConfig(
                    horizon=h,
                    action_low=cfg.action_low,
                    action_high=cfg.action_high,
                    population=cfg.cem_population,
                    elites=cfg.cem_elites,
                    iterations=cfg.cem_init_iterations,
                    init_std=max(cfg.init_std, 1e-3),
                )
            )
            warm = cem(objective, mean, generator=generator, prior=prior)
            mean = warm.actions
            info["cem_best_cost"] = warm.info["best_cost"]
            extra_evals = cfg.cem_population * cfg.cem_init_iterations + 1

        with torch.no_grad():
            starts = [mean.unsqueeze(0)]
            if prior is not None:
                starts.append(prior)
            num_random = max(cfg.num_starts - sum(s.shape[0] for s in starts), 0)
            noise = gaussian(num_random, h, a, generator)
            starts.append(torch.addcmul(mean, cfg.init_std * half, noise).clamp_(low, high))
            init = torch.cat(starts)[: cfg.num_starts]  # S×H×A
            if cfg.bounds_method == "tanh":
                init = torch.atanh(((init - centre) / half).clamp(-_TANH_EDGE, _TANH_EDGE))

        def to_actions(z: Tensor) -> Tensor:
            return centre + half * torch.tanh(z) if cfg.bounds_method == "tanh" else z

        z = init.clone().requires_grad_(True)
        step = _OPTIMIZERS[cfg.optimizer](z, cfg.lr)
        best_costs = torch.full((cfg.num_starts,), torch.inf, device=device)
        best = to_actions(init)
        log = IterationLog()
        log.count(extra_evals)

        def track(actions: Tensor, costs: Tensor) -> None:
            nonlocal best, best_costs
            better = costs < best_costs
            best = torch.where(better[:, None, None], actions, best)
            best_costs = torch.where(better, costs, best_costs)
            spread = actions.std(0, correction=0) if cfg.num_starts > 1 else actions.new_zeros(())
            log.record(costs, spread)

        with torch.enable_grad():
            for _ in range(cfg.iterations):
                actions = to_actions(z)
                costs = evaluate(objective, actions)
                if not costs.requires_grad:
                    raise TypeError(
                        "the gradient planner needs an objective that is differentiable w.r.t. "
                        "the actions (its costs carry no grad_fn); use a sampling planner instead"
                    )
                track(actions.detach(), costs.detach())
                # Infinite/NaN costs contribute no gradient (and must not poison the others).
                loss = torch.where(torch.isfinite(costs), costs, 0.0).sum()
                (grad,) = torch.autograd.grad(loss, z)
                with torch.no_grad():
                    step(torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0))
                    if cfg.bounds_method == "clamp":
                        z.clamp_(low, high)
        with torch.no_grad():
            actions = to_actions(z)
            track(actions, evaluate(objective, actions))

        pick = torch.argmin(best_costs)
        info.update(log.info(device))
        return PlanResult(best[pick], best_costs[pick], info)

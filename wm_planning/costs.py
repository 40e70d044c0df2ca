"""Cost seam: a cost turns a model's :class:`~wm_planning.models.base.Rollout` into ``B`` costs.

``make_objective(model, state, cost)`` closes over an encoded state and gives the planners their
``B×H×A -> B`` objective, so any model pairs with any planner and with any cost whose
``requires`` its rollouts provide.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from wm_planning.models.base import Rollout, WorldModel
from wm_planning.registry import Registry

_REGISTRY: Registry[type[Cost]] = Registry("cost")
register = _REGISTRY.register
available = _REGISTRY.available


def make(name: str, **kwargs: Any) -> Cost:
    return _REGISTRY.get(name)(**kwargs)


class Cost(ABC):
    name: ClassVar[str] = ""
    #: Rollout fields this cost reads
    requires: ClassVar[frozenset[str]] = frozenset()

    def needs(self) -> frozenset[str]:
        """Rollout fields this cost instance reads (wrappers add their base's)."""
        return self.requires

    @abstractmethod
    def __call__(self, rollout: Rollout) -> Tensor:
        """``B`` costs, lower is better."""


def _discounts(horizon: int, discount: float, like: Tensor) -> Tensor:
    return discount ** torch.arange(horizon, device=like.device, dtype=like.dtype)


@register("reward")
@dataclass
class RewardCost(Cost):
    """``-(Σ_t γ^t r_t + value_weight · γ^H V(z_H))``: reward model plus optional value bootstrap."""

    discount: float = 1.0
    value_weight: float = 0.0
    requires: ClassVar[frozenset[str]] = frozenset({"rewards"})

    def __call__(self, rollout: Rollout) -> Tensor:
        rewards = rollout.get("rewards")  # B×H
        horizon = rewards.shape[1]
        ret = (rewards * _discounts(horizon, self.discount, rewards)).sum(1)
        if self.value_weight:
            ret = ret + self.value_weight * self.discount**horizon * rollout.get("terminal_value")
        return -ret


@register("goal_latent")
@dataclass
class GoalLatentCost(Cost):
    """Squared distance of predicted latents to a goal latent ``D`` (final step, or every step
    with later steps weighted more when ``every_step``)."""

    goal: Tensor
    every_step: bool = False
    requires: ClassVar[frozenset[str]] = frozenset({"latents"})

    def __call__(self, rollout: Rollout) -> Tensor:
        z = rollout.get("latents")  # B×H×D
        d = (z - self.goal.to(z).reshape(1, 1, -1)).pow(2).mean(-1)  # B×H
        if not self.every_step:
            return d[:, -1]
        w = torch.arange(1, d.shape[1] + 1, device=d.device, dtype=d.dtype)
        return (d * w).sum(1) / w.sum()


def reduce_time(d: Tensor, every_step: bool) -> Tensor:
    """``B×H`` per-step costs -> ``B``: the last step, or a mean weighted ``1..H`` (later steps
    count more: early progress is rewarded without giving up the final state)."""
    if not every_step:
        return d[:, -1]
    w = torch.arange(1, d.shape[1] + 1, device=d.device, dtype=d.dtype)
    return (d * w).sum(1) / w.sum()


@register("goal_pixels")
@dataclass
class GoalPixelCost(Cost):
    """Mean squared pixel distance of the final (or, ``every_step``, each) predicted frame to a
    goal image ``C×h×w``."""

    goal: Tensor
    every_step: bool = False
    requires: ClassVar[frozenset[str]] = frozenset({"frames"})

    def __call__(self, rollout: Rollout) -> Tensor:
        frames = rollout.get("frames")  # B×H×C×h×w
        goal = self.goal.to(frames)
        if goal.shape != frames.shape[2:]:
            raise ValueError(
                f"goal image {tuple(goal.shape)} does not match predicted frames {tuple(frames.shape[2:])}"
            )
        if not self.every_step:
            return (frames[:, -1] - goal).pow(2).flatten(1).mean(1)
        return reduce_time((frames - goal).pow(2).flatten(2).mean(2), True)


@register("uncertainty_penalty")
@dataclass
class UncertaintyPenalty(Cost):
    """Wraps a cost and adds ``weight · Σ_t uncertainty_t`` (pessimism against model error)."""

    base: Cost
    weight: float = 1.0

    def needs(self) -> frozenset[str]:
        return self.base.needs() | {"uncertainty"}

    def __call__(self, rollout: Rollout) -> Tensor:
        return self.base(rollout) + self.weight * rollout.get("uncertainty").sum(1)


def make_objective(model: WorldModel, state: Any, cost: Cost) -> Callable[[Tensor], Tensor]:
    """The planners' objective ``actions B×H×A -> B``: ``cost(model.rollout(state, actions))``."""
    missing = cost.needs() - model.provides if model.provides else frozenset()
    if missing:
        raise ValueError(
            f"{type(model).__name__} does not predict {sorted(missing)}, which the "
            f"{type(cost).__name__} needs; it provides {sorted(model.provides)}"
        )

    if model.optional_outputs:
        wanted = cost.needs()
        rollout: Any = model.rollout

        def lean_objective(actions: Tensor) -> Tensor:
            return cost(rollout(state, actions, outputs=wanted))

        return lean_objective

    def objective(actions: Tensor) -> Tensor:
        return cost(model.rollout(state, actions))

    return objective

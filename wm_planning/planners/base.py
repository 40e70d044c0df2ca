"""Planner seam: a planner is a pure function of a frozen config, an objective over action
batches, a warm-start mean and a ``torch.Generator``.

Shapes: ``B`` candidate sequences, ``H`` horizon, ``A`` action dimension, ``P`` prior trajectories.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from wm_planning.registry import Registry

Objective = Callable[[Tensor], Tensor]
"""Maps actions ``B×H×A`` to costs ``B`` (lower is better)."""


@dataclass(frozen=True)
class PlannerConfig:
    """Options every planner shares. Subclasses add their own fields and validate in
    ``__post_init__`` (call ``super().__post_init__()``)."""

    horizon: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]

    def __post_init__(self) -> None:
        # Accept any sequence (lists from YAML, tensors, numpy) but store plain tuples so the
        # config stays hashable and frozen.
        for name in ("action_low", "action_high"):
            value = getattr(self, name)
            if isinstance(value, Tensor):
                value = value.detach().cpu().flatten().tolist()
            elif isinstance(value, int | float):
                value = [value]
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if len(self.action_low) != len(self.action_high) or not self.action_low:
            raise ValueError(
                f"action_low and action_high must be non-empty and of equal length, got "
                f"{len(self.action_low)} and {len(self.action_high)}"
            )
        for lo, hi in zip(self.action_low, self.action_high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
                raise ValueError(f"each action bound needs finite low < high, got [{lo}, {hi}]")

    @property
    def action_dim(self) -> int:
        return len(self.action_low)

    def replace(self, **changes: Any) -> PlannerConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class PlanResult:
    """What a plan returns.

    actions: ``H×A`` sequence to execute, within bounds.
    cost: scalar cost of ``actions`` as the objective scored it (for planners that return a
        distribution mean, the mean is evaluated once more so the number is honest).
    info: per-iteration diagnostics, each a 1-D tensor over iterations (``best_cost``,
        ``mean_cost``, ``std``) plus scalars such as ``num_evaluated``.
    carry: planner-specific warm-start state for the next call (e.g. iCEM's elites ``K×H×A``,
        MPPI's std ``H×A``). Every tensor has time at dim -2 so the controller can shift it
        without knowing the planner.
    """

    actions: Tensor
    cost: Tensor
    info: dict[str, Tensor] = field(default_factory=dict)
    carry: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanStart:
    """What every plan begins from, validated once by :meth:`Planner.__call__`.

    low, high: ``A`` bounds on the planning device. mean: ``H×A`` warm start clamped to the box
    (the box centre without one). prior: ``P×H×A`` clamped prior trajectories or ``None``.
    """

    device: torch.device
    low: Tensor
    high: Tensor
    mean: Tensor
    prior: Tensor | None

    @property
    def half(self) -> Tensor:
        """``A`` half-widths of the box (stds are expressed as fractions of them)."""
        return (self.high - self.low) / 2


class Planner(ABC):
    """Base class: holds only the frozen config; every call is independent."""

    name: ClassVar[str] = ""
    Config: ClassVar[type[PlannerConfig]] = PlannerConfig
    #: whether the planner differentiates through the objective
    needs_gradients: ClassVar[bool] = False

    def __init__(self, config: PlannerConfig) -> None:
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {config!r}")
        self.config = config

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def __call__(
        self,
        objective: Objective,
        init_mean: Tensor | None = None,
        *,
        generator: torch.Generator,
        prior: Tensor | None = None,
        carry: dict[str, Tensor] | None = None,
    ) -> PlanResult:
        """Plan one action sequence.

        objective: ``B×H×A -> B`` costs.
        init_mean: ``H×A`` warm start (e.g. the shifted previous plan); ``None`` starts at the
            centre of the action box.
        generator: the only source of randomness; its device is the planning device.
        prior: optional ``P×H×A`` trajectories (e.g. a policy prior) evaluated beside the samples.
        carry: the previous result's ``carry``, already shifted by the controller.
        """
        device = generator.device
        low, high = self.bounds(device)
        start = PlanStart(
            device=device,
            low=low,
            high=high,
            mean=self.initial_mean(init_mean, device),
            prior=self.check_prior(prior, device),
        )
        # Sampling planners never need autograd; only gradient-based ones build a graph.
        with torch.enable_grad() if self.needs_gradients else torch.no_grad():
            return self._plan(objective, start, generator=generator, carry=dict(carry or {}))

    @abstractmethod
    def _plan(
        self,
        objective: Objective,
        start: PlanStart,
        *,
        generator: torch.Generator,
        carry: dict[str, Tensor],
    ) -> PlanResult:
        """The algorithm proper, from inputs :meth:`__call__` has validated into ``start``."""

    # -- helpers shared by the implementations -----------------------------------------------
    def bounds(
        self, device: torch.device, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """Action bounds as ``A`` tensors on ``device``."""
        low = torch.tensor(self.config.action_low, device=device, dtype=dtype)
        high = torch.tensor(self.config.action_high, device=device, dtype=dtype)
        return low, high

    def initial_mean(self, init_mean: Tensor | None, device: torch.device) -> Tensor:
        """``H×A`` starting mean: the warm start clamped to the box, or the box centre."""
        low, high = self.bounds(device)
        h, a = self.config.horizon, self.config.action_dim
        if init_mean is None:
            return ((low + high) / 2).expand(h, a).clone()
        if init_mean.shape != (h, a):
            raise ValueError(f"init_mean must be H×A = {(h, a)}, got {tuple(init_mean.shape)}")
        if not torch.isfinite(init_mean).all():
            raise ValueError("init_mean contains NaN or inf")
        return torch.minimum(torch.maximum(init_mean.to(device, torch.float32), low), high)

    def check_prior(self, prior: Tensor | None, device: torch.device) -> Tensor | None:
        if prior is None:
            return None
        h, a = self.config.horizon, self.config.action_dim
        if prior.dim() != 3 or prior.shape[1:] != (h, a):
            raise ValueError(f"prior must be P×H×A with H×A = {(h, a)}, got {tuple(prior.shape)}")
        low, high = self.bounds(device)
        return torch.minimum(torch.maximum(prior.to(device, torch.float32), low), high)


def evaluate(objective: Objective, actions: Tensor) -> Tensor:
    """Call the objective and check what it returns: ``B×H×A -> B``, finite values become +inf."""
    costs = objective(actions)
    if costs.shape != actions.shape[:1]:
        raise ValueError(
            f"objective must map B×H×A to B costs; got {tuple(costs.shape)} for "
            f"{tuple(actions.shape)} actions"
        )
    # A NaN cost must never win a selection: treat it as the worst possible.
    return torch.nan_to_num(costs.float(), nan=math.inf)


# -- registry -------------------------------------------------------------------------------------
_REGISTRY: Registry[type[Planner]] = Registry("planner")

#: Class decorator: ``@register("mppi")`` makes ``make("mppi", ...)`` build that planner.
register = _REGISTRY.register
#: Names ``make`` accepts, sorted.
available = _REGISTRY.available
get = _REGISTRY.get


def make(name: str, **options: Any) -> Planner:
    """Build a planner by name from keyword options (unknown options are an error)."""
    cls = get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"planner {name!r} has no option(s) {unknown}; it takes {sorted(fields)}")
    return cls(cls.Config(**options))


def as_tuple(x: Sequence[float] | Tensor) -> tuple[float, ...]:
    if isinstance(x, Tensor):
        return tuple(float(v) for v in x.detach().cpu().flatten())
    return tuple(float(v) for v in x)

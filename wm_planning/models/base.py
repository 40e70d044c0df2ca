"""World-model seam: ``encode(obs) -> state``, ``rollout(state, actions B×H×A) -> Rollout``.

State is an explicit object handed back and forth, never hidden inside the module, so one model
instance can plan for several robots and a planner can roll the same state out many times.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Rollout:
    """What a model predicts for ``B`` action sequences of length ``H``.

    Every field is optional; a cost states which ones it needs (:attr:`Cost.requires`).
      latents: ``B×H×D`` predicted latent after each action (flattened per step)
      rewards: ``B×H`` predicted per-step reward
      frames: ``B×H×C×h×w`` predicted images in [0, 1]
      terminal_value: ``B`` value estimate of the final latent (e.g. TD-MPC2's Q at the horizon)
      uncertainty: ``B×H`` epistemic disagreement (e.g. ensemble variance)
      extras: anything model-specific (e.g. ``ee_pos`` ``B×H×3``, pixel distributions)
    """

    latents: Tensor | None = None
    rewards: Tensor | None = None
    frames: Tensor | None = None
    terminal_value: Tensor | None = None
    uncertainty: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def get(self, name: str) -> Tensor:
        """A field or extra by name, with a clear error when the model does not predict it."""
        value = getattr(self, name, None) if name != "extras" else None
        if value is None:
            value = self.extras.get(name)
        if value is None:
            raise KeyError(f"this model's rollout has no {name!r}; the chosen cost needs it")
        return value


class WorldModel(ABC):
    """Interface every model family implements (learned or exact physics)."""

    #: fields of :class:`Rollout` this model fills; costs are checked against it
    provides: frozenset[str] = frozenset()
    #: fields that cost extra compute and are filled only when asked: such a model's ``rollout``
    #: takes ``outputs=`` (the fields wanted; ``None`` = all) and the objective passes the cost's
    #: needs, so planning never pays for e.g. decoded frames a latent cost ignores
    optional_outputs: frozenset[str] = frozenset()

    @abstractmethod
    def encode(self, obs: Mapping[str, Any]) -> Any:
        """Observation dict (``state``/``proprio``/``pixels``) -> model state for planning."""

    @abstractmethod
    def rollout(self, state: Any, actions: Tensor) -> Rollout:
        """Imagine ``B`` action sequences ``B×H×A`` from ``state`` (shared by all sequences)."""

    def value(self, state: Any) -> Tensor:
        """Optional value estimate of ``state``."""
        raise NotImplementedError(f"{type(self).__name__} has no value function")

    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss on a batch of sub-sequences; exact models are not trained."""
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

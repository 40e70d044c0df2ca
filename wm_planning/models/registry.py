"""Learned world models: a decorator registry, a shared ``nn.Module`` base and the planning state.

``@register_model("tdmpc2")`` on a :class:`LearnedModel` subclass makes
``make_model("tdmpc2", spec, **options)`` build it from its frozen ``Config`` dataclass; the
checkpoint code (``wm_planning.training.checkpoint``) rebuilds models the same way from the name,
options and :class:`ModelSpec` it stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from wm_planning.registry import Registry

from .base import WorldModel


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs to know about its environment.

    obs_shapes: observation key -> shape (``state`` ``S``, ``pixels`` ``H×W×3``).
    action_dim: ``A``; actions live in ``[-1, 1]^A`` (every env here uses that box).
    episode_length: env steps per episode (TD-MPC2 derives its discount from it).
    """

    obs_shapes: dict[str, tuple[int, ...]]
    action_dim: int
    episode_length: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "obs_shapes",
            {str(k): tuple(int(d) for d in v) for k, v in self.obs_shapes.items()},
        )
        if self.action_dim < 1 or self.episode_length < 1:
            raise ValueError(
                f"action_dim and episode_length must be >= 1, got {self.action_dim}, "
                f"{self.episode_length}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "obs_shapes": {k: list(v) for k, v in self.obs_shapes.items()},
            "action_dim": self.action_dim,
            "episode_length": self.episode_length,
        }


@dataclass
class LatentState:
    """Planning state of a latent model: ``latent`` ``N×D`` (``N = 1`` for one observation; a
    rollout expands it over its ``B`` sequences). ``generator``: if set, the rollout draws its
    randomness (PlaNet's stochastic state, TD-MPC2's policy noise and random Q pair) from it;
    if ``None`` the rollout is deterministic (means, averages)."""

    latent: Tensor
    generator: torch.Generator | None = None


class LearnedModel(nn.Module, WorldModel):
    """Base of the trainable world models.

    Subclasses set ``Config`` (a frozen dataclass validating itself), implement the
    :class:`WorldModel` seam and may override the hooks below. State observations are normalised
    with ``obs_mean``/``obs_std`` buffers (set from the training data by :meth:`set_obs_stats`;
    they travel in the weights, so a checkpoint carries its data statistics).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[Any]]
    #: the planner config (``configs/planner/<name>.yaml``) this model family plans with
    default_planner: ClassVar[str] = "cem"
    #: observation key the model reads (from its config: ``state`` or ``pixels``)
    obs_key: str
    discount: float

    obs_mean: Tensor
    obs_std: Tensor

    def __init__(self, config: Any, spec: ModelSpec) -> None:
        nn.Module.__init__(self)
        self.config = config
        self.spec = spec
        self.obs_key = str(config.obs)
        if self.obs_key not in spec.obs_shapes:
            raise ValueError(
                f"{self.name} reads obs {self.obs_key!r} but the env provides "
                f"{sorted(spec.obs_shapes)} (collect with pixels=true for pixel models)"
            )
        self.obs_shape = spec.obs_shapes[self.obs_key]
        self.pixels = self.obs_key == "pixels"
        if self.pixels and (len(self.obs_shape) != 3 or self.obs_shape[2] != 3):
            raise ValueError(f"pixel observations must be H×W×3, got {self.obs_shape}")
        dim = 1 if self.pixels else int(np.prod(self.obs_shape))
        self.register_buffer("obs_mean", torch.zeros(dim))
        self.register_buffer("obs_std", torch.ones(dim))

    # -- observations --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.obs_mean.device

    def set_obs_stats(self, mean: Tensor, std: Tensor) -> None:
        """Normalise state observations with these statistics (ignored for pixels)."""
        if self.pixels:
            return
        self.obs_mean.copy_(mean.reshape(-1))
        self.obs_std.copy_(std.reshape(-1).clamp_min(1e-3))

    def preprocess(self, obs: Tensor) -> Tensor:
        """Raw observations ``…×S`` (float) or ``…×H×W×3`` (uint8) -> network input:
        normalised ``…×S`` or ``…×3×H×W`` in ``[-0.5, 0.5]``."""
        if self.pixels:
            x = obs.to(self.device, torch.float32) / 255.0 - 0.5
            return x.movedim(-1, -3)
        return (obs.to(self.device, torch.float32) - self.obs_mean) / self.obs_std

    def obs_tensor(self, obs: Mapping[str, Any]) -> Tensor:
        """The model's observation from an env/batch dict as ``N×…`` (adds ``N = 1`` if unbatched)."""
        try:
            x = obs[self.obs_key]
        except KeyError:
            raise KeyError(
                f"{self.name} needs observation {self.obs_key!r}, got keys {sorted(obs)}"
            ) from None
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        if t.dim() == len(self.obs_shape):
            t = t.unsqueeze(0)
        return self.preprocess(t)

    # -- optional hooks ------------------------------------------------------------------------
    def observe(
        self, state: LatentState | None, action: Tensor | None, obs: Mapping[str, Any]
    ) -> LatentState:
        """Filtering update after executing ``action`` ``A`` and seeing ``obs``; models without a
        recurrent state simply encode ``obs``."""
        return self.encode(obs)

    def policy_prior(
        self, state: LatentState, horizon: int, num: int, generator: torch.Generator
    ) -> Tensor | None:
        """``P×H×A`` trajectories from the model's own policy (for a planner's ``prior``)."""
        return None

    def default_cost_options(self) -> dict[str, Any]:
        """Options of :class:`wm_planning.costs.RewardCost` for planning with this model."""
        return {"discount": 1.0, "value_weight": 0.0}

    def optim_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups (Adam); each may carry ``clip`` (grad-norm limit)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def after_update(self) -> None:
        """Called after every optimizer step (e.g. EMA target networks)."""

    def num_params(self) -> int:
        """Trainable parameters (target networks excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


_MODELS: Registry[type[LearnedModel]] = Registry("model")
#: Class decorator: ``@register_model("planet")``.
register_model = _MODELS.register


def available_models() -> list[str]:
    _load_builtin()
    return _MODELS.available()


def get_model_class(name: str) -> type[LearnedModel]:
    _load_builtin()
    return _MODELS.get(name)


def make_config(name: str, options: Mapping[str, Any]) -> Any:
    """The frozen config of model ``name`` from options (unknown keys are an error)."""
    cls = get_model_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {unknown}; it takes {sorted(fields)}")
    return cls.Config(**{k: _tuples(v) for k, v in options.items()})


def make_model(name: str, spec: ModelSpec, **options: Any) -> LearnedModel:
    """Build model ``name`` for ``spec`` from keyword options of its ``Config``."""
    cls = get_model_class(name)
    return cls(make_config(name, options), spec)


def model_from_config(cfg: Mapping[str, Any], spec: ModelSpec) -> LearnedModel:
    """Build from a mapping such as ``configs/model/<option>.yaml``: ``name`` + options."""
    options = {str(k): v for k, v in cfg.items()}
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"model config needs a string 'name' (one of {available_models()})")
    return make_model(name, spec, **options)


def _tuples(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _load_builtin() -> None:
    # Importing the family modules runs their decorators; done lazily to keep
    # ``wm_planning.models`` importable without building anything.
    from . import dino_wm, planet, tdmpc2, visual_foresight  # noqa: F401

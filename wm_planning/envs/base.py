"""One environment API for every task (arm tasks and DeepMind Control Suite wrappers).

Observations are dicts of numpy arrays:
  ``state``   S    float32, full low-dimensional task state (what a state-based model sees)
  ``proprio`` Pp   float32, robot-only state (joint positions and velocities)
  ``pixels``  H×W×3 uint8, from ``spec.camera`` at ``spec.image_size`` (only if ``spec.pixels``)
Actions are float arrays in ``[spec.action_low, spec.action_high]``; an out-of-bounds action is
clamped (documented behaviour; a non-finite action raises ``ValueError``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wm_planning.registry import Registry

Obs = dict[str, np.ndarray]
StepResult = tuple[Obs, float, bool, bool, dict[str, Any]]


@dataclass(frozen=True)
class EnvSpec:
    """Static description of an environment instance."""

    name: str
    obs_shapes: dict[str, tuple[int, ...]]
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    control_dt: float  # seconds per env step (after action repeat)
    episode_length: int  # env steps
    action_repeat: int = 1
    camera: str | None = None
    image_size: tuple[int, int] = (64, 64)  # H, W
    pixels: bool = False
    success_threshold: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def action_dim(self) -> int:
        return len(self.action_low)


class Env(ABC):
    """Base class of every task environment."""

    spec: EnvSpec

    @abstractmethod
    def reset(self, seed: int | None = None) -> Obs: ...

    @abstractmethod
    def step(self, action: np.ndarray) -> StepResult:
        """Returns ``(obs, reward, terminated, truncated, info)``; ``info["success"]`` is a bool."""

    @abstractmethod
    def render(self, camera: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """``H×W×3`` uint8 image from ``camera`` (default ``spec.camera``) at ``size`` (H, W)."""

    @abstractmethod
    def get_state(self) -> np.ndarray:
        """Everything needed to restore the exact simulation state (1-D float64)."""

    @abstractmethod
    def set_state(self, state: np.ndarray) -> None: ...

    @abstractmethod
    def goal_image(
        self, camera: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """The scene rendered with the goal achieved, from the same camera as ``render``."""

    # -- optional hooks (tasks that know their goal implement them) ---------------------------
    def goal_state(self) -> np.ndarray:
        """The ``get_state()`` vector with the goal achieved (what ``goal_image`` renders)."""
        raise NotImplementedError(f"{self.spec.name} has no goal state")

    def evaluate(self) -> tuple[float, bool]:
        """``(distance to goal, success)`` of the current state, by the task's own measure."""
        raise NotImplementedError(f"{self.spec.name} has no goal distance")

    def goal_observation(self, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """The observation at the goal; here only ``pixels`` (envs that can also give the goal's
        proprioception override it)."""
        return {"pixels": self.goal_image(size=size)}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release renderers and other resources."""

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        """Validate and clamp an action to the spec's box."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.spec.action_dim,):
            raise ValueError(
                f"{self.spec.name}: action must have shape ({self.spec.action_dim},), got {a.shape}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.spec.name}: action contains NaN or inf: {a}")
        return np.clip(a, self.spec.action_low, self.spec.action_high)


class MujocoEnv(Env):
    """An env simulated by MuJoCo. Exposes the raw ``mujoco.MjModel``/``MjData`` so that exact
    dynamics planning (``models.mujoco_dynamics``) and domain randomization
    (``envs.randomization``) work on any of them without knowing the task."""

    #: physics steps per env step (action repeat x substeps); randomization may change it
    n_substeps: int = 1

    @property
    @abstractmethod
    def model(self) -> Any:
        """The ``mujoco.MjModel`` being simulated (mutable: randomization edits it in place)."""

    @property
    @abstractmethod
    def data(self) -> Any:
        """The ``mujoco.MjData`` of the running simulation."""


# -- registry -------------------------------------------------------------------------------------
EnvFactory = Callable[..., Env]
_REGISTRY: Registry[EnvFactory] = Registry("env")
#: Decorator registering an env factory (class or function) under a name.
register = _REGISTRY.register
available = _REGISTRY.available


def make(name: str, **kwargs: Any) -> Env:
    return _REGISTRY.get(name)(**kwargs)

"""Data-collection policies, registered by name with :func:`register`.

A policy is built as ``cls(env, **options)``; ``reset(seed)`` starts an episode and
``act(obs) -> action`` returns an ``A`` float array inside the env's action box.

* ``random``: uniform in the box (i.i.d. per step).
* ``correlated``: a clipped random walk, ``a_t = clip(a_{t-1} + N(0, step·half_range))``, which
  explores further than i.i.d. noise for position-like actions.
* ``planner``: MPC with any :mod:`wm_planning.planners` planner over the exact-dynamics model
  :class:`wm_planning.models.mujoco_dynamics.MujocoDynamics` of the (unwrapped) env; needs an env
  with the arm-env hooks (``controls``/``features``/``cost``/``split_state``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from wm_planning.envs.base import Env, Obs
from wm_planning.registry import Registry

_POLICIES: Registry[type[Policy]] = Registry("policy")
register = _POLICIES.register
available = _POLICIES.available


def make(name: str, env: Env, **options: Any) -> Policy:
    return _POLICIES.get(name)(env, **options)


class Policy(ABC):
    def __init__(self, env: Env) -> None:
        self.env = env
        self.low = np.asarray(env.spec.action_low, dtype=np.float64)
        self.high = np.asarray(env.spec.action_high, dtype=np.float64)
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng([0x9011C7, seed])

    @abstractmethod
    def act(self, obs: Obs) -> np.ndarray: ...


@register("random")
class RandomPolicy(Policy):
    def act(self, obs: Obs) -> np.ndarray:
        return self.rng.uniform(self.low, self.high)


@register("correlated")
class CorrelatedPolicy(Policy):
    def __init__(self, env: Env, step: float = 0.2) -> None:
        super().__init__(env)
        if not 0 < step <= 2:
            raise ValueError(f"correlated policy step must be in (0, 2], got {step}")
        self.step = float(step)
        self._a = (self.low + self.high) / 2

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._a = self.rng.uniform(self.low, self.high)

    def act(self, obs: Obs) -> np.ndarray:
        half = (self.high - self.low) / 2
        self._a = np.clip(
            self._a + self.rng.normal(0, self.step, self._a.shape) * half, self.low, self.high
        )
        return self._a.copy()


def _unwrap(env: Env) -> Env:
    """The innermost env under wrappers such as ``RandomizedEnv`` (same model, same physics)."""
    while hasattr(env, "env"):
        env = env.env
    return env


@register("scripted")
class ScriptedPolicy(Policy):
    """A proportional joint-space controller toward the episode's goal configuration, plus
    Gaussian exploration noise: purposeful, diverse data for the arm tasks whose goal is an arm
    configuration (``reach``, ``goal_reach``).

    gain: fraction of the remaining joint error commanded per step (before clipping to the
    velocity box). noise: Gaussian std as a fraction of the half box.
    """

    TASKS = ("reach", "goal_reach")

    def __init__(self, env: Env, gain: float = 0.3, noise: float = 0.2) -> None:
        super().__init__(env)
        inner: Any = _unwrap(env)  # an ArmEnv (checked below); its robot and task config
        task = inner.spec.extra.get("task")
        if task not in self.TASKS or not hasattr(inner, "split_state"):
            raise ValueError(
                f"the scripted policy drives an arm to its goal configuration; {env.spec.name} "
                f"is not an arm task of {self.TASKS} (use policy=correlated or policy=planner)"
            )
        if not (0 < gain <= 1 and noise >= 0):
            raise ValueError(f"need 0 < gain <= 1 and noise >= 0, got gain={gain}, noise={noise}")
        self.inner: Any = inner
        self.gain, self.noise = float(gain), float(noise)
        # joint motion of a full-scale action in one control step (the env's own scaling)
        self._vstep = np.asarray(inner.robot.velocity_limits) / inner.cfg.control_hz
        self._goal: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._goal = None  # the goal differs per episode: read it after the env's reset

    def act(self, obs: Obs) -> np.ndarray:
        if self._goal is None:
            self._goal = self.inner.split_state(self.inner.goal_state())["q_ref"].copy()
        q_ref = self.inner.split_state(self.inner.get_state())["q_ref"]
        a = self.gain * (self._goal - q_ref) / self._vstep
        a = a + self.rng.normal(0.0, self.noise, a.shape) * (self.high - self.low) / 2
        return np.clip(a, self.low, self.high)


@register("planner")
class PlannerPolicy(Policy):
    """Receding-horizon MPC (:class:`~wm_planning.control.Controller`) on the exact dynamics of
    the env being collected from.

    options: ``planner`` (registered name), ``horizon``, ``replan_every``, plus that planner's
    config fields.
    """

    def __init__(
        self,
        env: Env,
        planner: str = "mppi",
        horizon: int = 10,
        replan_every: int = 1,
        **options: Any,
    ) -> None:
        import torch

        from wm_planning import planners
        from wm_planning.control import Controller
        from wm_planning.models.mujoco_dynamics import MujocoDynamics

        super().__init__(env)
        inner = _unwrap(env)
        self.model = MujocoDynamics(inner)
        self.inner = inner
        plan = planners.make(
            planner,
            horizon=int(horizon),
            action_low=env.spec.action_low,
            action_high=env.spec.action_high,
            **options,
        )
        self._gen = torch.Generator()
        self.controller = Controller(plan, generator=self._gen, replan_every=int(replan_every))

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._gen.manual_seed(int(seed))
        self.controller.reset()

    def act(self, obs: Obs) -> np.ndarray:
        action = self.controller.act(self.model.objective(self.inner.get_state()))
        return action.detach().cpu().numpy().astype(np.float64)

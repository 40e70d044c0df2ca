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


def _dataset_box(path: str, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central 99 % of a dataset's actions (:func:`action_box`), inside ``[low, high]``
    (reads the ``action`` arrays only, not the pixels)."""
    from wm_planning.training.visual_checkpoint import action_box, planning_box

    from .format import Dataset, DatasetError

    actions = list(Dataset(path).arrays("action"))
    if not actions:
        raise DatasetError(f"{path} has no episodes to take an action box from")
    return planning_box("data", action_box(actions), low, high)


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
                f"is not an arm task of {self.TASKS} (push: policy=scripted_push; otherwise "
                "policy=correlated or policy=planner)"
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


@register("scripted_push")
class ScriptedPushPolicy(Policy):
    """Pushes the block of the arm ``push`` task with Cartesian control of the tip: get behind
    the block as seen along a push direction (over it, when on the wrong side), descend, push
    through, and stop. Each episode pushes towards its target, turned by a random angle (up to
    ``spread`` rad), for the target's distance; or, with probability ``random_dir``, 3-20 cm in
    any direction: data in which the block moves in many ways, with no reward used. Joint
    velocities come from the ee Jacobian (damped least squares), plus Gaussian noise (``noise`` ×
    half box).

    speed: tip speed while pushing (m/s). gain: 1/s, tip error to velocity while approaching.
    """

    HOVER = 0.06  # m above the push height while going round the block

    def __init__(
        self,
        env: Env,
        speed: float = 0.1,
        gain: float = 4.0,
        noise: float = 0.05,
        spread: float = 0.5,
        random_dir: float = 0.3,
    ) -> None:
        super().__init__(env)
        inner: Any = _unwrap(env)
        if inner.spec.extra.get("task") != "push" or not hasattr(inner, "ee_jacobian"):
            raise ValueError(f"scripted_push drives the arm push task; {env.spec.name} is not one")
        if not (speed > 0 and gain > 0 and noise >= 0 and spread >= 0 and 0 <= random_dir <= 1):
            raise ValueError("need speed, gain > 0; noise, spread >= 0; 0 <= random_dir <= 1")
        self.inner: Any = inner
        self.speed, self.gain, self.noise = float(speed), float(gain), float(noise)
        self.spread, self.random_dir = float(spread), float(random_dir)
        params = inner.cfg.params
        self.height = float(params.get("tip_height", 0.025))
        self.dt = 1.0 / float(inner.cfg.control_hz)
        self._vstep = np.asarray(inner.robot.velocity_limits) / inner.cfg.control_hz
        self._dir: np.ndarray | None = None
        self._fixed: np.ndarray | None = None
        self._offset = self._length = self._travel = 0.0
        self._last = np.zeros(2)

    def reset(self, seed: int) -> None:
        super().reset(seed)
        self._dir = None  # drawn after the env's reset (the target differs per episode)

    def _plan(self, block: np.ndarray) -> None:
        """This episode's push: turned ``_offset`` rad from the way to the target (re-aimed every
        step, so the block is steered) or, ``_fixed``, one random direction; for ``_length`` m."""
        to_goal = self.inner.target[:2] - block
        self._travel, self._last = 0.0, block
        if self.rng.uniform() < self.random_dir:
            phi = self.rng.uniform(-np.pi, np.pi)
            self._fixed = np.array([np.cos(phi), np.sin(phi)])
            self._length = self.rng.uniform(0.03, 0.2)
        else:
            self._fixed = None
            self._offset = self.rng.uniform(-1, 1) * self.spread
            self._length = float(np.linalg.norm(to_goal))

    def _direction(self, block: np.ndarray) -> np.ndarray:
        if self._fixed is not None:
            return self._fixed
        to_goal = self.inner.target[:2] - block
        phi = np.arctan2(to_goal[1], to_goal[0]) + self._offset
        return np.array([np.cos(phi), np.sin(phi)])

    def act(self, obs: Obs) -> np.ndarray:
        block = self.inner.data.sensor("block_pos").data[:2].copy()
        if self._dir is None:
            self._plan(block)
        if self._dir is not None:  # progress along the push (a knock sideways is not a push)
            self._travel += float((block - self._last) @ self._dir)
        self._last = block
        done = self._travel >= self._length or (
            self._fixed is None and self._offset == 0.0 and self.inner.evaluate()[1]
        )
        if done:  # pushed far enough (or onto the target): hold, jitter
            noise = self.rng.normal(0.0, self.noise, self.low.shape) * (self.high - self.low) / 2
            return np.clip(noise, self.low, self.high)
        u = self._dir = self._direction(block)
        tip = self.inner.ee_pos().copy()
        behind = block - (self.inner.task.HALF + 0.03) * u
        rel = tip[:2] - block
        side = float(rel[0] * u[1] - rel[1] * u[0])  # signed offset from the push line
        aligned = float(rel @ u) < -self.inner.task.HALF and abs(side) < 0.02
        if aligned and abs(tip[2] - self.height) < 0.015:
            # push through, pulled back onto the line through the block's centre
            normal = np.array([u[1], -u[0]])
            v = np.r_[
                self.speed * u - self.gain * side * normal, self.gain * (self.height - tip[2])
            ]
        else:  # go round: up first, over to behind the block, then down
            near = np.linalg.norm(tip[:2] - behind) < 0.015
            hover = self.height + self.HOVER
            if near or aligned:
                goal = np.r_[behind, self.height]
            elif tip[2] < hover - 0.01:
                goal = np.r_[tip[:2], hover]
            else:
                goal = np.r_[behind, hover]
            v = self.gain * (goal - tip)
        v = v * min(1.0, 2 * self.speed / max(float(np.linalg.norm(v)), 1e-9))
        j = self.inner.ee_jacobian()
        dq = j.T @ np.linalg.solve(j @ j.T + 1e-4 * np.eye(3), v * self.dt)
        a = (
            dq / self._vstep
            + self.rng.normal(0.0, self.noise, dq.shape) * (self.high - self.low) / 2
        )
        return np.clip(a, self.low, self.high)


@register("planner")
class PlannerPolicy(Policy):
    """Receding-horizon MPC (:class:`~wm_planning.control.Controller`) on the exact dynamics of
    the env being collected from.

    options: ``planner`` (registered name), ``horizon``, ``replan_every``, plus that planner's
    config fields; ``box_from`` (a dataset directory): plan inside the central 99 % of that
    dataset's actions instead of the env's box. A visual model's planner keeps to its training
    data's actions (``action_box``), so data collected this way shows the model the kind of
    motion its own planner makes there (jerky, colored-noise sequences at the same speeds), which
    a scripted policy's smooth motions do not.
    """

    def __init__(
        self,
        env: Env,
        planner: str = "mppi",
        horizon: int = 10,
        replan_every: int = 1,
        box_from: str | None = None,
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
        low = np.asarray(env.spec.action_low, dtype=float)
        high = np.asarray(env.spec.action_high, dtype=float)
        if box_from is not None:
            low, high = _dataset_box(box_from, low, high)
        plan = planners.make(
            planner, horizon=int(horizon), action_low=low, action_high=high, **options
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

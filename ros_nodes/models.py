"""Model adapters: what the planner node needs from a world model, behind a small registry.

A :class:`PlanningModel` turns the node's inputs (measured joints, the node's servo target
``q_ref``, an optional camera image) and a :class:`Goal` into the planners' objective
``B×H×A -> B``, and maps a planned action sequence to timed joint-position commands. Adapters
register with ``@register_model("name")`` and are built with :func:`make_model`; the node's
``model`` parameter picks one, so a learned model (PlaNet, TD-MPC2, DINO-WM...) plugs in as one
more module here wrapping its :class:`~wm_planning.models.base.WorldModel` (``encode`` the image
and joints, a cost from :mod:`wm_planning.costs` such as ``goal_latent`` on the encoded goal
image, and the same action-to-command mapping as the env it was trained on).

This module imports no ROS, so it is tested without rclpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import mujoco
import numpy as np
import torch
from torch import Tensor

from robots import Robot
from wm_planning.costs import Cost, GoalPixelCost, RewardCost, make_objective
from wm_planning.models.base import Rollout, WorldModel
from wm_planning.planners.base import Objective
from wm_planning.registry import Registry

GoalKind = Literal["joints", "pose", "image"]
GOAL_KINDS: tuple[GoalKind, ...] = ("joints", "pose", "image")


@dataclass(frozen=True)
class Observation:
    """The node's inputs at one instant, in the robot's joint order."""

    q: np.ndarray  # n measured positions
    qd: np.ndarray  # n measured velocities (zeros when the robot does not report them)
    q_ref: np.ndarray  # n servo target the node commanded last (== q after a hold)
    image: np.ndarray | None = None  # h×w×3 uint8 RGB at the model's image_size


@dataclass(frozen=True)
class Goal:
    """``joints``: n positions; ``pose``: end-effector xyz in the world frame; ``image``: h×w×3
    uint8 RGB at the model's image_size."""

    kind: GoalKind
    value: np.ndarray


class GoalUnsupported(ValueError):
    """The model cannot plan towards this kind of goal (reported in the node's status)."""


class PlanningModel(ABC):
    """A world model as the planner node uses it."""

    name: ClassVar[str] = ""

    robot: Robot
    #: seconds covered by one planned action (the model's control period)
    dt: float
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    #: goal kinds :meth:`objective` accepts
    goal_kinds: frozenset[GoalKind]
    #: (h, w) of the images the model consumes (camera input and goal images are resized to it)
    image_size: tuple[int, int]
    #: whether planning needs a fresh camera image (then a stale camera stops planning)
    needs_image: bool = False

    @abstractmethod
    def objective(self, obs: Observation, goal: Goal) -> Objective:
        """The planners' ``B×H×A -> B`` cost for this observation and goal."""

    @abstractmethod
    def commands(self, q_ref: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """``H×A`` actions -> ``H×n`` joint positions reached after each action (from ``q_ref``)."""

    def imagine(self, obs: Observation, goal: Goal, actions: np.ndarray) -> np.ndarray | None:
        """An ``h×w×3`` uint8 picture of where ``actions`` lead, or None if the model cannot
        render."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release renderers and thread pools."""


ModelFactory = Callable[..., PlanningModel]
_MODELS: Registry[ModelFactory] = Registry("model")
#: Register a :class:`PlanningModel` factory (class or function) under a name.
register_model = _MODELS.register
available_models = _MODELS.available


def make_model(name: str, **options: Any) -> PlanningModel:
    """Build a registered adapter; ``options``: robot, task, pose_task, checkpoint, camera,
    image_size, threads (each adapter rejects what it cannot use)."""
    return _MODELS.get(name)(**options)


# -- exact physics ---------------------------------------------------------------------------------
class _FinalFrames(WorldModel):
    """Adds ``frames`` (``B×1×3×h×w``: the final predicted state only, rendered) to an exact
    model's rollout, so :class:`~wm_planning.costs.GoalPixelCost` can score it."""

    provides = frozenset({"rewards", "latents", "frames"})

    def __init__(self, base: Any, render: Callable[[np.ndarray], np.ndarray]) -> None:
        self.base, self.render = base, render

    def encode(self, obs: Mapping[str, Any]) -> Any:
        return self.base.encode(obs)

    def rollout(self, state: Any, actions: Tensor) -> Rollout:
        out: Rollout = self.base.rollout(state, actions)
        phys = out.latents
        assert phys is not None
        frames = np.stack([self.render(p) for p in phys[:, -1].numpy()])  # B×h×w×3
        out.frames = torch.from_numpy(frames).permute(0, 3, 1, 2)[:, None].float() / 255.0
        return out


@register_model("mujoco")
class MujocoModel(PlanningModel):
    """The simulator as world model: MuJoCo rolls candidate sequences out from the measured joint
    state (:class:`~wm_planning.models.mujoco_dynamics.MujocoDynamics` on the
    :class:`~wm_planning.envs.arm.ArmEnv` of the robot). Actions are the env's normalised joint
    velocities, integrated into position targets exactly as the env does.

    Goals: ``joints`` use the ``task`` env's cost (a ``goal_reach`` kind: its target is the joint
    vector); ``pose`` uses ``pose_task`` (a ``reach`` kind: target = ee xyz); ``image`` renders the
    final predicted state of every candidate from ``camera`` and scores the pixel distance to the
    goal image (:class:`~wm_planning.costs.GoalPixelCost`), which costs one render per sample
    (about 1.5–3 ms at 64×64 on a CPU core), so keep sample counts small for image goals.
    """

    needs_image = False

    def __init__(
        self,
        *,
        robot: str,
        task: str = "goal_reach",
        pose_task: str = "reach",
        checkpoint: str = "",
        camera: str = "",
        image_size: tuple[int, int] = (64, 64),
        threads: int = 1,
    ) -> None:
        from wm_planning.envs.arm import ArmEnv
        from wm_planning.models.mujoco_dynamics import MujocoDynamics

        if checkpoint:
            raise ValueError(
                f"model 'mujoco' is exact physics and takes no checkpoint (got {checkpoint!r})"
            )
        self.envs = {
            "joints": ArmEnv(robot, task, camera=camera or None, image_size=image_size),
            "pose": ArmEnv(robot, pose_task, camera=camera or None, image_size=image_size),
        }
        kinds = {k: e.cfg.task for k, e in self.envs.items()}
        if kinds != {"joints": "goal_reach", "pose": "reach"}:
            raise ValueError(
                f"model 'mujoco' needs task of kind goal_reach and pose_task of kind reach, got {kinds}"
            )
        dts = {e.spec.control_dt for e in self.envs.values()}
        if len(dts) != 1:
            raise ValueError(f"task and pose_task must share one control period, got {sorted(dts)}")
        base = self.envs["joints"]
        self.robot = base.robot
        self.dt = base.spec.control_dt
        self.action_low, self.action_high = base.spec.action_low, base.spec.action_high
        self.goal_kinds = frozenset(GOAL_KINDS)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.camera = base.spec.camera or self.robot.cameras[0]
        self.dynamics = {k: MujocoDynamics(e, nthread=threads) for k, e in self.envs.items()}
        # Rendering for image goals and ~/imagined, per env; created lazily in the planning
        # thread (a GL context belongs to the thread that uses it).
        self._render: dict[str, tuple[mujoco.MjData, mujoco.Renderer]] = {}

    # -- state ----------------------------------------------------------------------------------
    @staticmethod
    def _kind(goal: Goal) -> str:
        return "pose" if goal.kind == "pose" else "joints"

    def sim_state(self, obs: Observation, goal: Goal) -> np.ndarray:
        """The env state vector of ``obs`` with the goal as the task target."""
        env = self.envs[self._kind(goal)]
        n = self.robot.n_joints
        for name, v in (("q", obs.q), ("qd", obs.qd), ("q_ref", obs.q_ref)):
            if np.shape(v) != (n,) or not np.all(np.isfinite(v)):
                raise ValueError(f"observation {name} must be {n} finite values, got {v}")
        env.set_joints(np.asarray(obs.q, dtype=float))
        m = env.model
        for j, qd in zip(self.robot.joint_names, obs.qd, strict=True):
            env.data.qvel[m.jnt_dofadr[m.joint(j).id]] = qd
        state = np.asarray(env.get_state(), dtype=np.float64)
        parts = env.split_state(state)  # views into ``state``
        parts["q_ref"][:] = np.clip(obs.q_ref, self.robot.lower, self.robot.upper)
        # An image goal has no task target; the pixel cost ignores it.
        parts["target"][:] = obs.q if goal.kind == "image" else np.asarray(goal.value, dtype=float)
        env.set_state(state)  # servo targets, target marker and derived quantities follow
        return np.asarray(env.get_state(), dtype=np.float64)

    def _render_physics(self, kind: str, phys: np.ndarray) -> np.ndarray:
        env = self.envs[kind]
        if kind not in self._render:
            h, w = self.image_size
            renderer = mujoco.Renderer(env.model, height=h, width=w)
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                renderer.scene.flags[flag] = False
            self._render[kind] = (mujoco.MjData(env.model), renderer)
        d, renderer = self._render[kind]
        mujoco.mj_setState(env.model, d, phys, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        mujoco.mj_kinematics(env.model, d)
        mujoco.mj_camlight(env.model, d)
        renderer.update_scene(d, camera=self.camera)
        return renderer.render()

    # -- PlanningModel ----------------------------------------------------------------------------
    def objective(self, obs: Observation, goal: Goal) -> Objective:
        state = self.sim_state(obs, goal)
        cost: Cost
        model: WorldModel
        if goal.kind == "image":
            img = np.asarray(goal.value)
            if img.shape != (*self.image_size, 3):
                raise ValueError(f"goal image must be {(*self.image_size, 3)}, got {img.shape}")
            cost = GoalPixelCost(torch.from_numpy(img).permute(2, 0, 1).float() / 255.0)
            model = _FinalFrames(
                self.dynamics["joints"], lambda p: self._render_physics("joints", p)
            )
        else:
            # The env's own task cost (rewards = -cost per step): the plan optimises exactly
            # what the simulated task scores.
            cost = RewardCost()
            model = self.dynamics["pose" if goal.kind == "pose" else "joints"]
        return make_objective(model, state, cost)

    def commands(self, q_ref: np.ndarray, actions: np.ndarray) -> np.ndarray:
        env = self.envs["joints"]
        a = np.clip(np.asarray(actions, dtype=float), self.action_low, self.action_high)
        _, q_refs = env.controls(np.asarray(q_ref, dtype=float)[None], a[None])
        return np.asarray(q_refs[0])

    def imagine(self, obs: Observation, goal: Goal, actions: np.ndarray) -> np.ndarray | None:
        kind = self._kind(goal)
        state = self.sim_state(obs, goal)
        out = self.dynamics[kind].rollout(
            state, torch.as_tensor(actions, dtype=torch.float32)[None]
        )
        assert out.latents is not None
        return self._render_physics(kind, out.latents[0, -1].numpy()).copy()

    def close(self) -> None:
        for _, renderer in self._render.values():
            renderer.close()
        self._render.clear()
        for dyn in self.dynamics.values():
            dyn.close()
        for env in self.envs.values():
            env.close()

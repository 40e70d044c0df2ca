"""Model adapters: what the planner node needs from a world model, behind a small registry.

A :class:`PlanningModel` turns the node's inputs (measured joints, the node's servo target
``q_ref``, an optional camera image) and a :class:`Goal` into the planners' objective
``B×H×A -> B``, and maps a planned action sequence to timed joint-position commands. Adapters
register with ``@register_model("name")`` and are built with :func:`make_model`; the node's
``model`` parameter picks one: ``mujoco`` (the simulator as world model), ``checkpoint`` (any
learned model trained by ``wm-plan train``: its :class:`~wm_planning.models.base.WorldModel`
encodes the observation the model was trained on, a cost from :mod:`wm_planning.costs` scores
its rollouts, and commands use the same action-to-position mapping as its training env) or
``goal_image`` (DINO-WM / visual foresight from ``wm-plan train-visual``, steered by goal
images).

This module imports no ROS, so it is tested without rclpy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import mujoco
import numpy as np
import torch
from torch import Tensor

from robots import Robot
from wm_planning.costs import Cost, GoalLatentCost, GoalPixelCost, RewardCost, make_objective
from wm_planning.models.base import Rollout, WorldModel
from wm_planning.planners.base import Objective
from wm_planning.registry import Registry

if TYPE_CHECKING:
    from wm_planning.envs.arm import ArmEnv
    from wm_planning.models.registry import LatentState, LearnedModel

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


@dataclass(frozen=True)
class PlannerChoice:
    """A planner as a model plans with it: ``configs/planner/<name>.yaml`` updated by
    ``options`` (what :func:`wm_planning.training.agent.make_planner` builds)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


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
    #: the planning horizon must be a multiple of this (a model step of several env steps)
    horizon_multiple: int = 1

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

    def default_planner(self) -> PlannerChoice | None:
        """The planner this model is meant to plan with (the node uses it when its ``planner``
        parameter is empty), or None."""
        return None

    def prior(
        self, obs: Observation, goal: Goal, horizon: int, generator: torch.Generator
    ) -> Tensor | None:
        """``P×H×A`` sequences the planner scores beside its samples (its ``prior``, e.g.
        TD-MPC2's policy rollouts), or None. The node calls it right after :meth:`objective` for
        the same ``obs`` and ``goal``; ``generator`` is the planning randomness."""
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
    image_size, threads, options (the adapter's own, the node's ``model_options``; each adapter
    rejects what it cannot use)."""
    return _MODELS.get(name)(**options)


def _no_options(model: str, options: Mapping[str, Any] | None) -> None:
    if options:
        raise ValueError(f"model {model!r} takes no model_options, got {sorted(options)}")


# -- shared by the adapters of ArmEnv-based models -------------------------------------------------
def set_arm_state(env: ArmEnv, obs: Observation, target: np.ndarray) -> np.ndarray:
    """Put ``env`` at the measured joints and velocities of ``obs``, its servo target at
    ``obs.q_ref`` and the task target at ``target``; returns the env state vector (float64)."""
    robot = env.robot
    n = robot.n_joints
    for name, v in (("q", obs.q), ("qd", obs.qd), ("q_ref", obs.q_ref)):
        if np.shape(v) != (n,) or not np.all(np.isfinite(v)):
            raise ValueError(f"observation {name} must be {n} finite values, got {v}")
    env.set_joints(np.asarray(obs.q, dtype=float))
    m = env.model
    for j, qd in zip(robot.joint_names, obs.qd, strict=True):
        env.data.qvel[m.jnt_dofadr[m.joint(j).id]] = qd
    state = np.asarray(env.get_state(), dtype=np.float64)
    parts = env.split_state(state)  # views into ``state``
    parts["q_ref"][:] = np.clip(obs.q_ref, robot.lower, robot.upper)
    parts["target"][:] = target
    env.set_state(state)  # servo targets, target marker and derived quantities follow
    return np.asarray(env.get_state(), dtype=np.float64)


def arm_commands(env: ArmEnv, q_ref: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """``H×A`` actions -> ``H×n`` servo targets after each env step, integrated from ``q_ref``
    exactly as ``env.step`` does (actions clipped to the env's box first)."""
    a = np.clip(np.asarray(actions, dtype=float), env.spec.action_low, env.spec.action_high)
    _, q_refs = env.controls(np.asarray(q_ref, dtype=float)[None], a[None])
    return np.asarray(q_refs[0])


def checked_image(
    img: np.ndarray | None, size: tuple[int, int], what: str, checkpoint: str
) -> np.ndarray:
    """``img`` as an ``h×w×3`` uint8 array of ``size``, or a ``ValueError`` saying what is wrong."""
    want = (*size, 3)
    if img is None:
        raise ValueError(f"{what} missing: checkpoint {checkpoint} plans from pixels")
    img = np.asarray(img)
    if img.shape != want or img.dtype != np.uint8:
        raise ValueError(f"{what} must be {want} uint8, got {img.shape} {img.dtype}")
    return img


def require_arm_env(checkpoint: str, env_name: str) -> None:
    """A checkpoint for the planner node must come from an arm env (the node drives arms)."""
    from wm_planning.envs.arm import ARM_TASKS

    arms = sorted(f"{r}-{t}" for r, t in ARM_TASKS)
    if env_name not in arms:
        raise ValueError(
            f"checkpoint {checkpoint} was trained on env {env_name!r}; the planner node drives "
            f"arms and needs a checkpoint of an arm env ({', '.join(arms)})"
        )


def require_robot(env: ArmEnv, checkpoint: str, env_name: str, robot: str) -> None:
    """``env`` (the checkpoint's training env) is of the node's ``robot``; closes it otherwise."""
    if env.robot.name != robot:
        env.close()
        raise ValueError(
            f"checkpoint {checkpoint} was trained on {env_name} (robot {env.robot.name!r}) "
            f"but the node's robot is {robot!r}"
        )


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
        options: Mapping[str, Any] | None = None,
    ) -> None:
        from wm_planning.envs.arm import ArmEnv
        from wm_planning.models.mujoco_dynamics import MujocoDynamics

        _no_options("mujoco", options)
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
        # An image goal has no task target; the pixel cost ignores it.
        target = obs.q if goal.kind == "image" else np.asarray(goal.value, dtype=float)
        return set_arm_state(env, obs, target)

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
        return arm_commands(self.envs["joints"], q_ref, actions)

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


# -- learned checkpoints ---------------------------------------------------------------------------
#: The goal a state-observing checkpoint is steered by, per task kind of its training env. A
#: ``reach`` env observes its target (the end-effector position), so a pose goal becomes that
#: target and the trained reward (+ value) scores the plan. A ``goal_reach`` env hides its target
#: from the observation, so the reward model cannot know a goal: a joint goal is scored as the
#: latent distance to the encoded observation at the goal configuration instead.
_STATE_GOALS: dict[str, GoalKind] = {"reach": "pose", "goal_reach": "joints"}


@register_model("checkpoint")
class CheckpointModel(PlanningModel):
    """A learned world model trained by ``wm-plan train`` (TD-MPC2, PlaNet...; from states or
    pixels), planned with as :class:`~wm_planning.eval.policies.CheckpointPolicy` does.

    The checkpoint decides the rest: its training env (an :class:`~wm_planning.envs.arm.ArmEnv`
    of the node's ``robot``; ``task``/``pose_task`` are ignored) gives the observation layout, the
    control period, the action box and the action-to-position mapping; its planner name and
    options are :meth:`default_planner`; TD-MPC2's ``num_prior`` policy rollouts are
    :meth:`prior`. Observations are built by putting the env at the node's inputs and reading the
    env's own observation function, so they match training exactly; pixel models read the camera
    image (``needs_image``) at the checkpoint's image size. The model state is encoded from the
    current inputs alone (``Agent`` filters it over the executed actions instead, which matters
    for recurrent models such as PlaNet).

    Goals (:data:`_STATE_GOALS`): state models of ``reach`` take ``pose`` goals (reward cost, as
    in training); of ``goal_reach`` ``joints`` goals (latent distance to the goal configuration,
    :class:`~wm_planning.costs.GoalLatentCost`). Pixel models see their target only in the camera
    image, so they take ``image`` goals (latent distance to the encoded goal image); how well a
    latent distance leads to a goal depends on the model and its training.
    """

    def __init__(
        self,
        *,
        robot: str,
        task: str = "",
        pose_task: str = "",
        checkpoint: str = "",
        camera: str = "",
        image_size: tuple[int, int] = (64, 64),
        threads: int = 1,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        from wm_planning.envs.arm import ArmEnv
        from wm_planning.training import load_checkpoint, make_env

        _no_options("checkpoint", options)
        if not checkpoint:
            raise ValueError(
                "model 'checkpoint' needs the checkpoint parameter: a checkpoint.pt of `wm-plan train`"
            )
        ck = load_checkpoint(checkpoint)  # CheckpointError naming the file: missing, corrupt...
        train = ck.config
        env_name = str(train.get("env") or "")
        require_arm_env(checkpoint, env_name)
        self.net: LearnedModel = ck.build_model("cpu")
        spec = self.net.spec
        # The env exactly as the trainer built it (task preset included); pixels come from the
        # camera, so the env never renders.
        env = make_env(
            env_name, False, int(train.get("image_size", 64)), train.get("action_repeat")
        )
        assert isinstance(env, ArmEnv)
        self.env = env
        require_robot(env, checkpoint, env_name, robot)
        key = self.net.obs_key
        if spec.action_dim != env.spec.action_dim or (
            not self.net.pixels and spec.obs_shapes[key] != tuple(env.spec.obs_shapes[key])
        ):
            env.close()
            raise ValueError(
                f"checkpoint {checkpoint}: the model takes {key} {spec.obs_shapes[key]} and "
                f"{spec.action_dim} actions but {env_name} now gives "
                f"{tuple(env.spec.obs_shapes.get(key, ()))} and {env.spec.action_dim}; the task "
                "changed since training"
            )
        self.checkpoint = checkpoint
        self.robot = env.robot
        self.dt = env.spec.control_dt
        self.action_low, self.action_high = env.spec.action_low, env.spec.action_high
        self.needs_image = self.net.pixels
        shape = spec.obs_shapes[key]
        self.image_size = (int(shape[0]), int(shape[1])) if self.net.pixels else env.spec.image_size
        self.task_kind = env.cfg.task
        goal = "image" if self.net.pixels else _STATE_GOALS.get(self.task_kind)
        self.goal_kinds = frozenset({goal} if goal is not None else ())
        self._goal_costs: dict[GoalKind, Callable[[Goal], tuple[np.ndarray, Cost]]] = {
            "pose": self._pose_goal,
            "joints": self._joints_goal,
            "image": self._image_goal,
        }
        self._planner = PlannerChoice(*ck.planner())
        self.num_prior = int(train.get("num_prior", 0))
        self._last: tuple[Observation, Goal, LatentState] | None = None

    # -- observations -----------------------------------------------------------------------------
    def observation(self, obs: Observation, target: np.ndarray) -> dict[str, np.ndarray]:
        """The observation dict the model was trained on (``state``, ``proprio`` and, for pixel
        models, ``pixels`` = the camera image) for the node's inputs with ``target`` as the task
        target."""
        set_arm_state(self.env, obs, target)
        out = dict(self.env.observe())  # the env's own layout, as in training
        if self.net.pixels:
            out["pixels"] = self._image(obs.image, "camera image")
        return out

    def _image(self, img: np.ndarray | None, what: str) -> np.ndarray:
        return checked_image(img, self.image_size, what, self.checkpoint)

    @torch.no_grad()
    def encode(self, obs: Mapping[str, np.ndarray]) -> LatentState:
        """Model state for one observation dict (what ``Agent`` plans from on a fresh start)."""
        return self.net.observe(None, None, obs)

    # -- goals: (task target in the observation, cost) ----------------------------------------------
    def _no_target(self) -> np.ndarray:
        return np.zeros(self.env.task.target_dim())

    def _pose_goal(self, goal: Goal) -> tuple[np.ndarray, Cost]:
        return np.asarray(goal.value, dtype=float), RewardCost(**self.net.default_cost_options())

    def _joints_goal(self, goal: Goal) -> tuple[np.ndarray, Cost]:
        q = np.asarray(goal.value, dtype=float)  # the goal_reach target (n joints)
        at_goal = Observation(q, np.zeros_like(q), q)  # settled at the goal, as goal_state()
        z = self.encode(self.observation(at_goal, q)).latent
        return q, GoalLatentCost(z[0])

    def _image_goal(self, goal: Goal) -> tuple[np.ndarray, Cost]:
        img = self._image(goal.value, "goal image")
        obs = {self.net.obs_key: img}
        return self._no_target(), GoalLatentCost(self.encode(obs).latent[0])

    # -- PlanningModel ----------------------------------------------------------------------------
    def objective(self, obs: Observation, goal: Goal) -> Objective:
        if goal.kind not in self.goal_kinds:
            raise GoalUnsupported(
                f"checkpoint {self.checkpoint} ({'pixels' if self.net.pixels else 'state'}, "
                f"{self.task_kind}) plans towards {sorted(self.goal_kinds) or 'no'} goals, "
                f"not {goal.kind}"
            )
        target, cost = self._goal_costs[goal.kind](goal)
        if target.shape != (self.env.task.target_dim(),) or not np.all(np.isfinite(target)):
            raise ValueError(
                f"{goal.kind} goal must be {self.env.task.target_dim()} finite values, got {target}"
            )
        state = self.encode(self.observation(obs, target))
        self._last = (obs, goal, state)
        return make_objective(self.net, state, cost)

    def _state(self, obs: Observation, goal: Goal) -> LatentState:
        last = self._last
        if last is not None and last[0] is obs and last[1] is goal:
            return last[2]  # encoded by objective() for this plan
        self.objective(obs, goal)
        assert self._last is not None
        return self._last[2]

    def commands(self, q_ref: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return arm_commands(self.env, q_ref, actions)

    def default_planner(self) -> PlannerChoice:
        """The checkpoint's training planner: ``planner`` (or the model family's default) with
        ``planner_options``, as :class:`~wm_planning.eval.policies.CheckpointPolicy` uses it."""
        return self._planner

    @torch.no_grad()
    def prior(
        self, obs: Observation, goal: Goal, horizon: int, generator: torch.Generator
    ) -> Tensor | None:
        if self.num_prior < 1:
            return None
        return self.net.policy_prior(self._state(obs, goal), horizon, self.num_prior, generator)

    @torch.no_grad()
    def imagine(self, obs: Observation, goal: Goal, actions: np.ndarray) -> np.ndarray | None:
        if "frames" not in self.net.provides:
            return None  # state models and latent-only pixel models predict no pictures
        a = torch.as_tensor(actions, dtype=torch.float32)[None]
        frames = self.net.rollout(self._state(obs, goal), a).frames
        assert frames is not None
        return (frames[0, -1].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy().copy()

    def close(self) -> None:
        self.env.close()


# -- goal-image checkpoints ------------------------------------------------------------------------
@register_model("goal_image")
class GoalImageModel(PlanningModel):
    """A goal-image world model trained by ``wm-plan train-visual`` (DINO-WM or visual foresight),
    planned with its goal-image cost as ``wm-plan goal`` does (:func:`~wm_planning.costs_visual.
    goal_cost`).

    The checkpoint records the env its dataset came from (an arm env of the node's ``robot``; a
    file written before checkpoints recorded it uses ``<robot>-<task>``). That env gives the
    control period, the action box, the action-to-position mapping, the proprioception layout
    and, for ``joints`` goals, the camera that renders the goal. Camera images (``needs_image``)
    must come at the checkpoint's image size from the camera it was trained with.

    Goals: ``image`` (an h×w×3 picture of the goal scene; the image alone is the objective) and
    ``joints`` (the env renders the arm at the goal configuration, and DINO-WM adds the goal's
    proprioception with weight ``proprio_weight``, DINO-WM's own objective and the configuration
    measured in ``docs/goal_images.md``).

    ``options`` (the node's ``model_options``): ``proprio_weight`` (DINO-WM, joints goals;
    default 1.0), ``every_step`` (score every predicted block, default true), ``planner`` /
    ``planner_options`` / ``plan_blocks`` (the default planner: iCEM 64 × 8 elites × 4
    iterations over 3 model steps, the measured configuration).

    The model state is encoded from the current camera image and joints alone (a one-frame
    history, as the first plan of a ``wm-plan goal`` episode): the actions the robot executed
    between frames are not known exactly on a real arm (holds, clamping, missed deadlines), and a
    history built from the planned ones would be wrong whenever they differ. Visual foresight's
    context frame (what its masks copy background from) is the first image after a goal arrives.
    """

    needs_image = True

    def __init__(
        self,
        *,
        robot: str,
        task: str = "goal_reach",
        pose_task: str = "",
        checkpoint: str = "",
        camera: str = "",
        image_size: tuple[int, int] = (64, 64),
        threads: int = 1,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        from wm_planning.envs.arm import ArmEnv
        from wm_planning.training.visual_checkpoint import load_visual_checkpoint, planning_box

        if not checkpoint:
            raise ValueError(
                "model 'goal_image' needs the checkpoint parameter: a .pt of `wm-plan train-visual`"
            )
        opts = dict(options or {})
        known = {"proprio_weight", "every_step", "planner", "planner_options", "plan_blocks"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ValueError(
                f"model 'goal_image' options {unknown} unknown; known: {sorted(known)}"
            )
        ck = load_visual_checkpoint(checkpoint)  # CheckpointError naming the file
        self.net: Any = ck.model
        env_name = ck.env or f"{robot}-{task}"
        require_arm_env(checkpoint, env_name)
        shape = self.net.spec.obs_shapes["pixels"]
        self.image_size = (int(shape[0]), int(shape[1]))
        r_name, t_name = env_name.split("-", 1)
        env = ArmEnv(r_name, t_name, camera=camera or None, image_size=self.image_size)
        require_robot(env, checkpoint, env_name, robot)
        if self.net.action_dim != env.spec.action_dim:
            env.close()
            raise ValueError(
                f"checkpoint {checkpoint} takes {self.net.action_dim} actions but {env_name} has "
                f"{env.spec.action_dim}"
            )
        self.env, self.checkpoint = env, checkpoint
        self.robot = env.robot
        self.dt = env.spec.control_dt
        # plans stay inside the actions the model was trained on, as `wm-plan goal` does
        low, high = planning_box(
            "data",
            ck.action_box,
            np.asarray(env.spec.action_low, dtype=float),
            np.asarray(env.spec.action_high, dtype=float),
        )
        self.action_low, self.action_high = tuple(map(float, low)), tuple(map(float, high))
        self.frameskip = int(getattr(self.net.config, "frameskip", 1))
        self.horizon_multiple = self.frameskip  # plans cover whole model steps
        self.history = int(getattr(self.net.config, "history", 1))
        self.has_proprio = "proprio" in self.net.spec.obs_shapes
        self.goal_kinds = frozenset({"image", "joints"})
        self.every_step = bool(opts.get("every_step", True))
        # DINO-WM's goal proprioception term; visual foresight predicts pixels only
        self.proprio_weight = float(opts.get("proprio_weight", 1.0)) if self.has_proprio else 0.0
        blocks = int(opts.get("plan_blocks", 3))
        planner_options = {"population": 64, "elites": 8, "iterations": 4}
        planner_options.update(dict(opts.get("planner_options") or {}))
        planner_options["horizon"] = blocks * self.frameskip
        self._planner = PlannerChoice(str(opts.get("planner", "icem")), planner_options)
        self._goal_key: tuple[str, bytes] | None = None
        self._goal_cost_cache: Cost | None = None
        self._context: np.ndarray | None = None
        self._last: tuple[Observation, Goal, Any] | None = None

    # -- goals ------------------------------------------------------------------------------------
    def _checked_image(self, img: np.ndarray | None, what: str) -> np.ndarray:
        return checked_image(img, self.image_size, what, self.checkpoint)

    def goal_image(self, goal: Goal) -> tuple[np.ndarray, np.ndarray | None]:
        """The goal picture and, for ``joints`` goals, the goal proprioception (``q``, zero
        velocity: settled at the goal, as the env's ``goal_observation``)."""
        if goal.kind == "image":
            return self._checked_image(goal.value, "goal image"), None
        q = np.asarray(goal.value, dtype=float)
        n = self.robot.n_joints
        if q.shape != (n,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joints goal must be {n} finite values, got {goal.value}")
        q = np.clip(q, self.robot.lower, self.robot.upper)
        at_goal = Observation(q, np.zeros(n), q)
        target = q if self.env.task.target_dim() == n else np.zeros(self.env.task.target_dim())
        set_arm_state(self.env, at_goal, target)
        pixels = self.env.render(None, self.image_size)
        return pixels, np.concatenate([q, np.zeros(n)]).astype(np.float32)

    def _goal_cost(self, goal: Goal) -> Cost:
        from wm_planning.costs_visual import goal_cost

        key = (goal.kind, np.ascontiguousarray(goal.value).tobytes())
        if self._goal_cost_cache is None or key != self._goal_key:
            pixels, proprio = self.goal_image(goal)
            opts: dict[str, Any] = {"every_step": self.every_step}
            if self.net.name == "dino_wm":  # an image goal has no proprioception to score
                opts["proprio_weight"] = self.proprio_weight if proprio is not None else 0.0
            cost = goal_cost(self.net, pixels, proprio if opts.get("proprio_weight") else None,
                             **opts)  # fmt: skip
            self._goal_key, self._goal_cost_cache = key, cost
            self._context = None  # a new goal starts a new visual-foresight context
        return self._goal_cost_cache

    # -- observations -----------------------------------------------------------------------------
    def observation(self, obs: Observation) -> dict[str, np.ndarray]:
        """What the model encodes: ``pixels`` (the camera image), ``proprio`` (joints and
        velocities, the env's layout) and visual foresight's ``context`` frame."""
        image = self._checked_image(obs.image, "camera image")
        n = self.robot.n_joints
        for name, v in (("q", obs.q), ("qd", obs.qd)):
            if np.shape(v) != (n,) or not np.all(np.isfinite(v)):
                raise ValueError(f"observation {name} must be {n} finite values, got {v}")
        if self._context is None:
            self._context = image
        out = {"pixels": image, "context": self._context}
        if self.has_proprio:
            out["proprio"] = np.concatenate([obs.q, obs.qd]).astype(np.float32)
        return out

    # -- PlanningModel ----------------------------------------------------------------------------
    def objective(self, obs: Observation, goal: Goal) -> Objective:
        if goal.kind not in self.goal_kinds:
            raise GoalUnsupported(
                f"goal-image checkpoint {self.checkpoint} plans towards image and joints goals, "
                f"not {goal.kind}"
            )
        cost = self._goal_cost(goal)
        with torch.no_grad():
            state = self.net.encode(self.observation(obs))
        self._last = (obs, goal, state)
        return make_objective(self.net, state, cost)

    def commands(self, q_ref: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return arm_commands(self.env, q_ref, actions)

    def default_planner(self) -> PlannerChoice:
        return self._planner

    @torch.no_grad()
    def imagine(self, obs: Observation, goal: Goal, actions: np.ndarray) -> np.ndarray | None:
        if "frames" not in self.net.provides:
            return None  # DINO-WM without its visualisation decoder
        last = self._last
        if last is None or last[0] is not obs or last[1] is not goal:
            self.objective(obs, goal)
            last = self._last
        assert last is not None
        a = torch.as_tensor(actions, dtype=torch.float32)[None]
        h = a.shape[1] - a.shape[1] % self.frameskip
        if h < self.frameskip:
            return None
        frames = self.net.rollout(last[2], a[:, :h]).frames
        assert frames is not None
        return (frames[0, -1].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy().copy()

    def close(self) -> None:
        self.env.close()

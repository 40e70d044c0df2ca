"""Arm environments: one :class:`ArmEnv` parametrised by a robot record and a task config.

Action semantics (every arm task): ``action ∈ [-1, 1]^n`` is a normalised joint-velocity
command. At each control tick (``control_hz``; an env step is ``action_repeat`` ticks) the env
integrates a position target ``q_ref += action · v_max / control_hz``, clipped to the joint
limits, and the robot's position servos track ``q_ref`` for ``timestep`` physics steps until the
next tick. Position and velocity limits of the command therefore hold by construction, and
``q_ref`` is part of :meth:`ArmEnv.get_state`.

The cost of a step is a batched function of (joint state, ``q_ref``, sensor readings at the step
boundary, action, target) shared with :mod:`wm_planning.models.mujoco_dynamics`, so the planning
cost on exact dynamics and the env reward (``-cost``) cannot drift apart.

Optional hooks beyond :class:`~wm_planning.envs.base.Env` (used by the contract tests):
``goal_state()`` (the env state with the goal achieved; ``goal_image`` renders it) and
``evaluate()`` (``(distance, success)`` of the current state; ``success ⇔ distance <= threshold``).
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import mujoco
import numpy as np

import robots
from robots import Robot

from .base import EnvSpec, MujocoEnv, Obs, StepResult, register

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS.value


# -- task configuration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskConfig:
    """A task as data (``configs/task/<name>.yaml``); ``task`` picks the :class:`Task` kind."""

    task: str
    episode_length: int = 100
    control_hz: float = 25.0
    action_repeat: int = 1
    success_threshold: float = 0.02
    weights: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"unknown task kind {self.task!r}; available: {sorted(_TASKS)}")
        if self.episode_length < 1 or self.action_repeat < 1:
            raise ValueError("episode_length and action_repeat must be >= 1")
        if not (self.control_hz > 0 and self.success_threshold > 0):
            raise ValueError("control_hz and success_threshold must be > 0")
        kind = _TASKS[self.task]
        unknown = set(self.weights) - set(kind.weight_names)
        if unknown:
            raise ValueError(
                f"task {self.task!r}: unknown weights {sorted(unknown)}; "
                f"known: {sorted(kind.weight_names)}"
            )
        object.__setattr__(self, "weights", {**kind.weight_names, **dict(self.weights)})

    @classmethod
    def load(cls, name: str, **overrides: Any) -> TaskConfig:
        """Read ``configs/task/<name>.yaml`` (keys may be overridden)."""
        from wm_planning.config import load_group

        data = {**load_group("task", name), **overrides}
        return cls(**data)


# -- batched step features and tasks --------------------------------------------------------------
@dataclass
class Features:
    """What a task cost sees for ``B`` states at env-step boundaries (float64 numpy)."""

    q: np.ndarray  # B×n joint positions
    qd: np.ndarray  # B×n joint velocities
    q_ref: np.ndarray  # B×n servo targets
    sensors: dict[str, np.ndarray]  # name -> B×dim (``ee_pos``; push adds ``block_pos``...)
    action: np.ndarray  # B×A
    target: np.ndarray  # B×k task target (k = Task.target_dim)


_TASKS: dict[str, type[Task]] = {}


def task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator registering a task kind."""

    def deco(cls: type[Task]) -> type[Task]:
        cls.kind = name
        _TASKS[name] = cls
        return cls

    return deco


class Task(ABC):
    """A task kind: scene additions, per-seed sampling and a batched cost."""

    kind: ClassVar[str] = ""
    #: cost weights and their defaults
    weight_names: ClassVar[dict[str, float]] = {}
    #: whether the target is part of the ``state`` observation
    target_observed: ClassVar[bool] = True
    #: the camera pixels come from when none is named (``None``: the robot's first camera); a
    #: task that needs a closer view adds its camera in :meth:`build`
    camera: ClassVar[str | None] = None

    def __init__(self, cfg: TaskConfig, robot: Robot) -> None:
        self.cfg, self.robot = cfg, robot
        self.w = dict(cfg.weights)

    def target_dim(self) -> int:
        return 3

    def build(self, spec: mujoco.MjSpec) -> None:  # noqa: B027 - optional hook
        """Add task objects to the scene."""

    @abstractmethod
    def sample(self, env: ArmEnv, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Set task objects in ``env.data``; return ``(q0 n, target k)``."""

    @abstractmethod
    def cost(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        """``(cost B, distance B)``; success is ``distance <= success_threshold``."""

    @abstractmethod
    def make_goal(self, env: ArmEnv) -> None:
        """Put ``env.data`` (and ``env.q_ref``) into the goal-achieved configuration."""

    def observe(self, env: ArmEnv) -> list[np.ndarray]:
        """Task-object entries of the ``state`` observation."""
        return []


def _action_cost(a: np.ndarray) -> np.ndarray:
    return np.mean(a * a, axis=-1)


def _sample_config(
    env: ArmEnv,
    rng: np.random.Generator,
    centre: np.ndarray,
    spread: float,
    accept: Callable[[], bool],
) -> np.ndarray:
    """Configuration ``centre ± spread`` (within limits) passing ``accept`` (data is set to it)."""
    lo, hi = env.robot.lower, env.robot.upper
    margin = 0.05 * (hi - lo)
    for _ in range(2000):
        q = np.clip(
            centre + rng.uniform(-spread, spread, size=centre.shape), lo + margin, hi - margin
        )
        env.set_joints(q)
        if env.floor_contacts() == 0 and accept():
            return q
    raise RuntimeError(
        f"{env.robot.name}-{env.cfg.task}: no configuration passed the sampling checks"
    )


@task("reach")
class Reach(Task):
    """End effector to a target position (a sampled configuration's ee, inside a workspace box)."""

    weight_names: ClassVar[dict[str, float]] = {"distance": 1.0, "action": 0.01, "velocity": 0.001}

    def build(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="target", mocap=True)
        body.add_geom(
            type=mujoco.mjtGeom.mjGEOM_SPHERE,
            size=[0.025, 0, 0],
            rgba=[0.1, 0.9, 0.2, 0.6],
            contype=0,
            conaffinity=0,
        )

    def sample(self, env: ArmEnv, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.cfg.params
        box = np.asarray(
            p["workspace"][self.robot.name]
            if self.robot.name in p["workspace"]
            else p["workspace"]["default"],
            dtype=float,
        )
        home = np.asarray(self.robot.home)
        self.goal_q = _sample_config(
            env,
            rng,
            home,
            float(p.get("target_spread", math.pi)),
            lambda: bool(np.all((box[0] <= env.ee_pos()) & (env.ee_pos() <= box[1]))),
        )
        target = env.ee_pos().copy()
        q0 = _sample_config(env, rng, home, float(p.get("init_noise", 0.1)), lambda: True)
        return q0, target

    def cost(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        d = np.linalg.norm(f.sensors["ee_pos"] - f.target, axis=-1)
        c = (
            self.w["distance"] * d
            + self.w["action"] * _action_cost(f.action)
            + self.w["velocity"] * np.sum(f.qd * f.qd, axis=-1)
        )
        return c, d

    def make_goal(self, env: ArmEnv) -> None:
        env.set_joints(self.goal_q)
        env.q_ref = self.goal_q.copy()


@task("goal_reach")
class GoalReach(Task):
    """Reach a joint configuration shown only as an image. The env knows the goal configuration:
    distance is the largest absolute joint error (rad); success when it is <= the threshold."""

    weight_names: ClassVar[dict[str, float]] = {"joint": 1.0, "action": 0.01, "velocity": 0.001}
    target_observed: ClassVar[bool] = False

    def target_dim(self) -> int:
        return self.robot.n_joints

    def sample(self, env: ArmEnv, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.cfg.params
        home = np.asarray(self.robot.home)
        min_z = float(p.get("min_ee_height", 0.1))
        goal = _sample_config(
            env, rng, home, float(p.get("goal_spread", 0.8)), lambda: bool(env.ee_pos()[2] >= min_z)
        )
        q0 = _sample_config(env, rng, home, float(p.get("init_noise", 0.1)), lambda: True)
        return q0, goal

    def cost(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        err = f.q - f.target
        d = np.max(np.abs(err), axis=-1)
        c = (
            self.w["joint"] * np.linalg.norm(err, axis=-1)
            + self.w["action"] * _action_cost(f.action)
            + self.w["velocity"] * np.sum(f.qd * f.qd, axis=-1)
        )
        return c, d

    def make_goal(self, env: ArmEnv) -> None:
        env.set_joints(env.target)
        env.q_ref = env.target.copy()


@task("push")
class Push(Task):
    """Push a block on the table to a target (x, y, yaw) marker. Success and distance use the
    block's xy position only (yaw is shown, weight ``yaw`` defaults to 0). The pusher starts behind
    the block, seen from the target (IK at reset)."""

    weight_names: ClassVar[dict[str, float]] = {
        "block": 1.0,
        "tip": 0.5,
        "height": 0.5,
        "yaw": 0.0,
        "action": 0.01,
        "velocity": 0.001,
    }
    HALF = 0.025  # block half size (m)
    # The scene camera sees the 5-cm block as a few pixels at 64×64: pixels of this task come
    # from a camera in front of the table, looking back at the workspace (about 0.5 m across).
    camera: ClassVar[str | None] = "table"
    CAMERA_POS = (0.95, 0.0, 0.45)
    CAMERA_AT = (0.5, 0.0, 0.0)

    def __init__(self, cfg: TaskConfig, robot: Robot) -> None:
        super().__init__(cfg, robot)
        self.direction = np.array([1.0, 0.0])  # this episode's push direction (set by sample)

    def target_dim(self) -> int:
        return 3  # x, y, yaw

    def build(self, spec: mujoco.MjSpec) -> None:
        body = spec.worldbody.add_body(name="block", pos=[0.5, 0, self.HALF])
        body.add_freejoint(name="block_joint")
        body.add_geom(
            name="block",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[self.HALF] * 3,
            mass=0.2,
            rgba=[0.85, 0.3, 0.2, 1],
            contype=1,
            conaffinity=3,
            friction=[0.5, 0.005, 0.0001],
        )
        body.add_site(name="block")
        eye, at = np.asarray(self.CAMERA_POS), np.asarray(self.CAMERA_AT)
        back = (eye - at) / np.linalg.norm(eye - at)  # MuJoCo cameras look along -z
        right = np.cross([0.0, 0.0, 1.0], back)
        right /= np.linalg.norm(right)
        up = np.cross(back, right)
        spec.worldbody.add_camera(name="table", pos=eye, xyaxes=[*right, *up], fovy=50)
        marker = spec.worldbody.add_body(name="target", mocap=True)
        marker.add_geom(
            type=mujoco.mjtGeom.mjGEOM_BOX,
            size=[self.HALF, self.HALF, 0.001],
            rgba=[0.1, 0.9, 0.2, 0.7],
            contype=0,
            conaffinity=0,
        )
        for name, kind in (
            ("block_pos", mujoco.mjtSensor.mjSENS_FRAMEPOS),
            ("block_quat", mujoco.mjtSensor.mjSENS_FRAMEQUAT),
        ):
            spec.add_sensor(name=name, type=kind, objtype=mujoco.mjtObj.mjOBJ_SITE, objname="block")

    def sample(self, env: ArmEnv, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        p = self.cfg.params
        bx, by = p.get("block_x", [0.45, 0.55]), p.get("block_y", [-0.1, 0.1])
        block = np.array([rng.uniform(*bx), rng.uniform(*by)])
        phi = rng.uniform(-1.0, 1.0) * float(p.get("max_angle", math.pi / 4))
        direction = np.array([math.cos(phi), math.sin(phi)])
        self.direction = direction  # where the pusher ends, for the goal state
        goal_xy = block + float(p.get("push_distance", 0.12)) * direction
        yaw = rng.uniform(-math.pi / 4, math.pi / 4)
        env.set_block(block, rng.uniform(-math.pi / 4, math.pi / 4))
        tip = np.r_[
            block - float(p.get("start_offset", 0.07)) * direction,
            float(p.get("tip_height", 0.025)),
        ]
        q0 = env.solve_ik(tip, np.asarray(self.robot.home))
        return q0, np.r_[goal_xy, yaw]

    def cost(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        block = f.sensors["block_pos"]
        to_goal = f.target[:, :2] - block[:, :2]
        d = np.linalg.norm(to_goal, axis=-1)
        # the pusher should sit just behind the block as seen from the target
        behind = block[:, :2] - (self.HALF + 0.02) * to_goal / np.maximum(d, 1e-6)[:, None]
        ee = f.sensors["ee_pos"]
        tip = np.linalg.norm(ee[:, :2] - behind, axis=-1)
        height = np.abs(ee[:, 2] - float(self.cfg.params.get("tip_height", 0.025)))
        quat = f.sensors["block_quat"]
        block_yaw = 2 * np.arctan2(quat[:, 3], quat[:, 0])  # valid while the block stays upright
        yaw_err = np.abs(np.angle(np.exp(4j * (block_yaw - f.target[:, 2])))) / 4  # square symmetry
        c = (
            self.w["block"] * d
            + self.w["tip"] * tip
            + self.w["height"] * height
            + self.w["yaw"] * yaw_err
            + self.w["action"] * _action_cost(f.action)
            + self.w["velocity"] * np.sum(f.qd * f.qd, axis=-1)
        )
        return c, d

    def make_goal(self, env: ArmEnv) -> None:
        """The block on the target and the arm where a push along the sampled direction ends:
        the tip behind the block (a goal image shows the whole scene, the arm included)."""
        tip = np.r_[
            env.target[:2] - (self.HALF + 0.02) * self.direction,
            float(self.cfg.params.get("tip_height", 0.025)),
        ]
        q = env.solve_ik(tip, np.asarray(self.robot.home))
        env.q_ref = q.copy()
        env.set_block(env.target[:2], float(env.target[2]))

    def observe(self, env: ArmEnv) -> list[np.ndarray]:
        return [env.data.sensor("block_pos").data, env.data.sensor("block_quat").data]


# -- the environment ------------------------------------------------------------------------------
class ArmEnv(MujocoEnv):
    """A robot arm from :mod:`robots` doing a :class:`Task` (see the module docstring)."""

    def __init__(
        self,
        robot: str | Robot,
        task: str | TaskConfig,
        *,
        pixels: bool = False,
        image_size: tuple[int, int] = (64, 64),
        camera: str | None = None,
        seed: int | None = None,
        **task_overrides: Any,
    ) -> None:
        self.robot = robots.get(robot) if isinstance(robot, str) else robot
        if self.robot.actuator_mode != "position":
            raise ValueError(
                f"ArmEnv drives position servos; {self.robot.name!r} is {self.robot.actuator_mode}"
            )
        self.cfg = TaskConfig.load(task, **task_overrides) if isinstance(task, str) else task
        self.task = _TASKS[self.cfg.task](self.cfg, self.robot)

        spec = mujoco.MjSpec.from_file(str(self.robot.mjcf))
        self._build_scene(spec)
        self.task.build(spec)
        self._model = spec.compile()
        self._data = mujoco.MjData(self._model)
        m = self._model

        ticks = 1.0 / (self.cfg.control_hz * m.opt.timestep)
        if abs(ticks - round(ticks)) > 1e-6 or round(ticks) < 1:
            raise ValueError(
                f"1/control_hz must be a multiple of the physics timestep {m.opt.timestep}"
            )
        self.substeps_per_tick = round(ticks)
        self.n_substeps = self.substeps_per_tick * self.cfg.action_repeat

        n = self.robot.n_joints
        self._qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.robot.joint_names])
        self._dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.robot.joint_names])
        self._act = np.array([m.actuator(a).id for a in self.robot.actuator_names])
        self._lower, self._upper = self.robot.lower, self.robot.upper
        self._vstep = np.asarray(self.robot.velocity_limits) / self.cfg.control_hz
        self._ee = m.site(self.robot.ee_site).id
        self.sensor_slices = {
            m.sensor(i).name: slice(int(m.sensor_adr[i]), int(m.sensor_adr[i] + m.sensor_dim[i]))
            for i in range(m.nsensor)
        }
        self._floor = m.geom("floor").id
        self.nphys = mujoco.mj_stateSize(m, FULL)
        # offsets of qpos/qvel inside an mjSTATE_FULLPHYSICS vector (time comes first)
        self.qpos_offset = 1
        self.qvel_offset = 1 + m.nq
        self.q_ref = np.asarray(self.robot.home, dtype=float)
        self.target = np.zeros(self.task.target_dim())
        self._t = 0
        self._rng = np.random.default_rng(seed)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

        cam = camera or self.task.camera or self.robot.cameras[0]
        if cam not in {m.camera(i).name for i in range(m.ncam)}:
            raise ValueError(f"camera {cam!r} not in the {self.robot.name} scene")
        self._camera, self._image_size, self._pixels = cam, tuple(image_size), pixels
        self.reset(seed)
        obs = self._obs(with_pixels=False)
        shapes = {k: v.shape for k, v in obs.items()}
        if pixels:
            shapes["pixels"] = (*image_size, 3)
        encoder = {
            "index": tuple(range(n)),
            "joint": tuple(int(m.joint(j).id) for j in self.robot.joint_names),
        }
        self.spec = EnvSpec(
            name=f"{self.robot.name}-{self.cfg.task}",
            obs_shapes=shapes,
            action_low=(-1.0,) * n,
            action_high=(1.0,) * n,
            control_dt=self.cfg.action_repeat / self.cfg.control_hz,
            episode_length=self.cfg.episode_length,
            action_repeat=self.cfg.action_repeat,
            camera=cam,
            image_size=tuple(image_size),  # type: ignore[arg-type]
            pixels=pixels,
            success_threshold=self.cfg.success_threshold,
            extra={
                "robot": self.robot.name,
                "task": self.cfg.task,
                "timestep": m.opt.timestep,
                # joint readings sit first in both vectors (randomization's encoder offsets)
                "encoder_index": {"state": encoder, "proprio": encoder},
            },
        )

    # -- scene ------------------------------------------------------------------------------------
    def _build_scene(self, spec: mujoco.MjSpec) -> None:
        spec.worldbody.add_geom(
            name="floor",
            type=mujoco.mjtGeom.mjGEOM_PLANE,
            size=[2, 2, 0.05],
            rgba=[0.8, 0.78, 0.72, 1],
            contype=1,
            conaffinity=1,
        )
        spec.worldbody.add_light(pos=[0.5, -0.5, 2.5], dir=[-0.2, 0.2, -1], castshadow=False)
        if "scene" not in {c.name for c in spec.cameras}:
            spec.worldbody.add_camera(
                name="scene", pos=[1.6, -1.1, 1.1], xyaxes=[0.57, 0.82, 0, -0.35, 0.24, 0.9]
            )
        spec.add_sensor(
            name="ee_pos",
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=self.robot.ee_site,
        )
        # rendering is a by-product: no shadows or multisampling
        spec.visual.quality.shadowsize = 0
        spec.visual.quality.offsamples = 0
        spec.visual.global_.offwidth = max(spec.visual.global_.offwidth, 1280)
        spec.visual.global_.offheight = max(spec.visual.global_.offheight, 960)

    @property
    def model(self) -> mujoco.MjModel:
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        return self._data

    # -- helpers the tasks use ------------------------------------------------------------------
    def ee_pos(self) -> np.ndarray:
        return self._data.site_xpos[self._ee]

    def ee_jacobian(self) -> np.ndarray:
        """``3×n`` positional Jacobian of the ee site over the arm joints at the current state
        (read-only: unlike :meth:`solve_ik`, the simulation is left as it is)."""
        jac = np.zeros((3, self._model.nv))
        mujoco.mj_jacSite(self._model, self._data, jac, None, self._ee)
        return jac[:, self._dadr].copy()

    def keypoints(self) -> np.ndarray:
        """``K×3`` world positions that pin the arm's configuration: the anchor of every joint
        after the first (the link tips) and the end effector."""
        m, d = self._model, self._data
        ids = [m.joint(j).id for j in self.robot.joint_names[1:]]
        return np.concatenate([d.xanchor[ids], d.site_xpos[self._ee][None]]).copy()

    def project(
        self, points: np.ndarray, camera: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """World points ``N×3`` -> ``N×2`` (row, col) pixel coordinates in ``camera``'s image of
        ``size`` (pinhole model of MuJoCo's camera: vertical field of view ``fovy``, square
        pixels, looking along its -z axis); points behind the camera raise ``ValueError``."""
        m, d = self._model, self._data
        h, w = size or self._image_size
        cam = m.camera(camera or self._camera).id
        rot = d.cam_xmat[cam].reshape(3, 3)  # columns: camera x (right), y (up), z (backwards)
        v = (np.asarray(points, dtype=float) - d.cam_xpos[cam]) @ rot
        depth = -v[:, 2]
        if np.any(depth <= 0):
            raise ValueError("a point lies behind the camera")
        f = 0.5 * h / np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)
        return np.stack([h / 2 - f * v[:, 1] / depth, w / 2 + f * v[:, 0] / depth], 1)

    def set_joints(self, q: np.ndarray) -> None:
        """Arm at ``q`` with zero velocity; kinematics updated."""
        self._data.qpos[self._qadr] = q
        self._data.qvel[self._dadr] = 0.0
        mujoco.mj_kinematics(self._model, self._data)
        mujoco.mj_comPos(self._model, self._data)  # Jacobians need cdof

    def floor_contacts(self) -> int:
        """Number of arm-floor contacts in the current configuration."""
        mujoco.mj_collision(self._model, self._data)
        g = self._data.contact.geom[: self._data.ncon]
        return int(np.sum(np.any(g == self._floor, axis=1)))

    def set_block(self, xy: np.ndarray, yaw: float) -> None:
        adr = self._model.jnt_qposadr[self._model.joint("block_joint").id]
        self._data.qpos[adr : adr + 7] = [
            xy[0],
            xy[1],
            Push.HALF,
            math.cos(yaw / 2),
            0,
            0,
            math.sin(yaw / 2),
        ]
        dadr = self._model.jnt_dofadr[self._model.joint("block_joint").id]
        self._data.qvel[dadr : dadr + 6] = 0.0
        mujoco.mj_kinematics(self._model, self._data)

    def solve_ik(self, pos: np.ndarray, q0: np.ndarray, iters: int = 200) -> np.ndarray:
        """Damped least-squares IK of the ee site to ``pos``, pulled towards ``q0`` in the
        null space; returns a configuration within limits (data is left at it)."""
        m, d = self._model, self._data
        q = q0.astype(float).copy()
        jac = np.zeros((3, m.nv))
        for _ in range(iters):
            self.set_joints(q)
            err = pos - self.ee_pos()
            if np.linalg.norm(err) < 1e-4:
                break
            mujoco.mj_jacSite(m, d, jac, None, self._ee)
            j = jac[:, self._dadr]
            jjt = j @ j.T + 1e-4 * np.eye(3)
            dq = j.T @ np.linalg.solve(jjt, err)
            null = np.eye(len(q)) - j.T @ np.linalg.solve(jjt, j)
            q = np.clip(q + dq + 0.1 * null @ (q0 - q), self._lower, self._upper)
        self.set_joints(q)
        return q

    # -- control mapping (shared with models.mujoco_dynamics) ------------------------------------
    def controls(self, q_ref: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map actions to servo targets exactly as :meth:`step` does, for a batch.

        q_ref: ``B×n`` targets before the first action; actions: ``B×H×A`` (already clamped).
        Returns ``ctrl`` ``B×(H·n_substeps)×nu`` (one row per physics step) and the targets at
        the end of each env step ``B×H×n``.
        """
        b, h, _ = actions.shape
        ticks = np.empty((b, h, self.cfg.action_repeat, self.robot.n_joints))
        q = q_ref.astype(float).copy()
        for t in range(h):
            delta = actions[:, t] * self._vstep
            for r in range(self.cfg.action_repeat):
                q = np.clip(q + delta, self._lower, self._upper)
                ticks[:, t, r] = q
        ctrl = np.zeros((b, h, self.cfg.action_repeat, self._model.nu))
        ctrl[..., self._act] = ticks
        ctrl = np.repeat(
            ctrl.reshape(b, h * self.cfg.action_repeat, -1), self.substeps_per_tick, axis=1
        )
        return ctrl, ticks[:, :, -1]

    def features(
        self,
        phys: np.ndarray,
        sensors: np.ndarray,
        q_ref: np.ndarray,
        action: np.ndarray,
        target: np.ndarray,
    ) -> Features:
        """Cost features from ``B`` FULLPHYSICS states and sensor rows (batched)."""
        return Features(
            q=phys[:, self.qpos_offset + self._qadr],
            qd=phys[:, self.qvel_offset + self._dadr],
            q_ref=q_ref,
            sensors={k: sensors[:, s] for k, s in self.sensor_slices.items()},
            action=action,
            target=np.broadcast_to(target, (phys.shape[0], target.shape[-1])),
        )

    def cost(self, f: Features) -> tuple[np.ndarray, np.ndarray]:
        """The task's batched ``(cost B, distance B)``."""
        return self.task.cost(f)

    # -- Env API ----------------------------------------------------------------------------------
    def _physics(self) -> np.ndarray:
        x = np.empty(self.nphys)
        mujoco.mj_getState(self._model, self._data, x, FULL)
        return x

    def _boundary_sensors(self) -> None:
        # Position-stage quantities at the step boundary, as mujoco.rollout records them at the
        # start of the next physics step; leaves qacc_warmstart (and so the next step) untouched.
        mujoco.mj_fwdPosition(self._model, self._data)
        mujoco.mj_sensorPos(self._model, self._data)

    def _sync_visuals(self) -> None:
        if self.task.kind == "push":
            self._data.mocap_pos[0] = [self.target[0], self.target[1], 0.001]
            yaw = self.target[2]
            self._data.mocap_quat[0] = [math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)]
        elif self.task.kind == "reach":
            self._data.mocap_pos[0] = self.target

    def reset(self, seed: int | None = None) -> Obs:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self._model, self._data)
        q0, target = self.task.sample(self, self._rng)
        self.target = np.asarray(target, dtype=float)
        self._data.qpos[self._qadr] = q0
        self._data.qvel[:] = 0.0
        self.q_ref = q0.copy()
        self._data.ctrl[self._act] = q0
        self._data.time = 0.0
        self._t = 0
        self._sync_visuals()
        mujoco.mj_forward(self._model, self._data)
        return self._obs()

    def step(self, action: np.ndarray) -> StepResult:
        a = self.clip_action(action)
        ctrl, q_refs = self.controls(self.q_ref[None], a[None, None])
        for k in range(0, ctrl.shape[1], self.substeps_per_tick):
            self._data.ctrl[:] = ctrl[0, k]
            mujoco.mj_step(self._model, self._data, self.substeps_per_tick)
        self.q_ref = q_refs[0, -1]
        self._boundary_sensors()
        f = self.features(
            self._physics()[None],
            self._data.sensordata[None],
            self.q_ref[None],
            a[None],
            self.target[None],
        )
        cost, dist = self.cost(f)
        self._t += 1
        success = bool(dist[0] <= self.cfg.success_threshold)
        info = {"success": success, "distance": float(dist[0]), "cost": float(cost[0])}
        return self._obs(), -float(cost[0]), False, self._t >= self.cfg.episode_length, info

    def evaluate(self) -> tuple[float, bool]:
        """``(distance, success)`` of the current state (action cost taken as zero)."""
        self._boundary_sensors()
        f = self.features(
            self._physics()[None],
            self._data.sensordata[None],
            self.q_ref[None],
            np.zeros((1, len(self.q_ref))),
            self.target[None],
        )
        d = float(self.cost(f)[1][0])
        return d, d <= self.cfg.success_threshold

    def observe(self, pixels: bool = False) -> Obs:
        """The observation of the current simulator state (e.g. after :meth:`set_state`), in the
        layout :meth:`step` returns: ``state``, ``proprio`` and, with ``pixels``, the camera."""
        return self._obs(with_pixels=pixels)

    def _obs(self, with_pixels: bool | None = None) -> Obs:
        d = self._data
        q, qd = d.qpos[self._qadr], d.qvel[self._dadr]
        parts = [q, qd, self.q_ref, self.ee_pos(), *self.task.observe(self)]
        if self.task.target_observed:
            parts.append(self.target)
        obs = {
            "state": np.concatenate(parts).astype(np.float32),
            "proprio": np.concatenate([q, qd]).astype(np.float32),
        }
        if with_pixels if with_pixels is not None else self._pixels:
            obs["pixels"] = self.render()
        return obs

    def get_state(self) -> np.ndarray:
        """``[FULLPHYSICS | qacc_warmstart (nv) | q_ref (n) | target (k) | t]`` (float64)."""
        return np.concatenate(
            [self._physics(), self._data.qacc_warmstart, self.q_ref, self.target, [float(self._t)]]
        )

    @property
    def state_size(self) -> int:
        return self.nphys + self._model.nv + self.robot.n_joints + self.task.target_dim() + 1

    def split_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Named parts of a :meth:`get_state` vector (views)."""
        state = np.asarray(state, dtype=float)
        if state.shape != (self.state_size,):
            raise ValueError(
                f"{self.spec.name}: state must have shape ({self.state_size},), got {state.shape}"
            )
        sizes = {
            "physics": self.nphys,
            "warmstart": self._model.nv,
            "q_ref": self.robot.n_joints,
            "target": self.task.target_dim(),
            "t": 1,
        }
        out, i = {}, 0
        for k, s in sizes.items():
            out[k] = state[i : i + s]
            i += s
        return out

    def set_state(self, state: np.ndarray) -> None:
        parts = self.split_state(state)
        mujoco.mj_setState(self._model, self._data, parts["physics"], FULL)
        self.q_ref = parts["q_ref"].copy()
        self.target = parts["target"].copy()
        self._t = int(parts["t"][0])
        self._data.ctrl[self._act] = self.q_ref
        self._sync_visuals()
        mujoco.mj_forward(self._model, self._data)
        self._data.qacc_warmstart[:] = parts["warmstart"]  # mj_forward overwrote it

    def goal_state(self) -> np.ndarray:
        """The env state with the goal achieved (the current state is left unchanged)."""
        saved = self.get_state()
        self.task.make_goal(self)
        self._data.ctrl[self._act] = self.q_ref
        mujoco.mj_forward(self._model, self._data)
        goal = self.get_state()
        self.set_state(saved)
        return goal

    def goal_observation(self, size: tuple[int, int] | None = None) -> Obs:
        """The observation at the goal (``pixels`` at ``size`` included), as a goal-conditioned
        model sees its goal: DINO-WM scores the goal's image and proprioception."""
        saved = self.get_state()
        self.set_state(self.goal_state())
        obs = self._obs(with_pixels=False)
        obs["pixels"] = self.render(None, size)
        self.set_state(saved)
        return obs

    def render(self, camera: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        h, w = size or self._image_size
        r = self._renderers.get((h, w))
        if r is None:
            r = mujoco.Renderer(self._model, height=h, width=w)
            for flag in (
                mujoco.mjtRndFlag.mjRND_SHADOW,
                mujoco.mjtRndFlag.mjRND_REFLECTION,
                mujoco.mjtRndFlag.mjRND_SKYBOX,
            ):
                r.scene.flags[flag] = False
            self._renderers[(h, w)] = r
        r.update_scene(self._data, camera=camera or self._camera)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
            r.scene.flags[flag] = False
        return r.render().copy()

    def goal_image(
        self, camera: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        saved = self.get_state()
        self.set_state(self.goal_state())
        img = self.render(camera, size)
        self.set_state(saved)
        return img

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


# -- registration: every (robot, task) pair that makes sense --------------------------------------
ARM_TASKS: tuple[tuple[str, str], ...] = (
    ("panda", "reach"),
    ("ur5e", "reach"),
    ("planar", "reach"),
    ("panda", "push"),
    ("panda", "goal_reach"),
    ("ur5e", "goal_reach"),
    ("planar", "goal_reach"),
)
for _robot, _task in ARM_TASKS:
    register(f"{_robot}-{_task}")(functools.partial(ArmEnv, _robot, _task))

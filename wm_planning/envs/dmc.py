"""DeepMind Control Suite tasks behind the :class:`~wm_planning.envs.base.MujocoEnv` API.

Registered as ``dmc-<domain>-<task>`` (``dmc-reacher-easy``, ``dmc-cheetah-run``, ...). One env
step applies the action for ``action_repeat`` control steps of the suite task; the returned
reward is their **sum** (PlaNet's convention, so a 1000-control-step return keeps the suite's
0..1000 scale). An episode is ``1000 // action_repeat`` env steps (the suite's 1000 control
steps); the last one returns ``truncated=True`` and stepping further raises until ``reset``.

Observations:
  ``state``   the suite observation dict flattened in its own key order (float32)
  ``proprio`` the task's position/velocity entries (``position``/``velocity``; walker:
              ``orientations``/``height``/``velocity``), i.e. without ``to_target``/``touch``
  ``pixels``  ``H×W×3`` uint8 from camera 0 of the task (PlaNet's view) when ``pixels=True``

``info["success"]`` at a step is ``r_last >= success_threshold`` where ``r_last`` is the suite
reward of the step's *last* control step (so the threshold reads in the suite's 0..1 reward
units whatever the action repeat); an episode succeeded when the final step's success is true.
Thresholds (``TASKS`` below, mirrored in ``configs/task/dmc_*.yaml``): reacher 1.0 (finger inside
the target, the suite's sparse reward), ball_in_cup 1.0 (ball in cup), finger-spin 1.0 (spinning),
point_mass 0.8 (mass on the target), cartpole-swingup 0.8 (pole up, cart centred), walker-walk
0.8, cheetah-run 0.5 (>= 5 m/s).

Action repeat defaults are PlaNet's (cartpole 8, reacher 4, cheetah 4, finger 2, ball_in_cup 4,
walker 2) and 4 for point_mass (smooth, slow dynamics like reacher's). TD-MPC2 uses 2 for every
DMC task: pass ``action_repeat=2``.

Goal images (``goal_image``) exist for tasks with a goal configuration: reacher (finger on the
target), point_mass (mass on the target), ball_in_cup (ball in the cup) and cartpole-swingup
(pole upright, cart centred). The pose is solved on a scratch ``MjData`` so the running
simulation is untouched. Locomotion and spinning tasks (cheetah-run, walker-walk, finger-spin)
have no goal configuration and raise ``NotImplementedError``.

Determinism: ``reset(seed)`` reseeds the task's ``RandomState``; the same seed and actions give a
bit-identical episode. ``get_state`` is ``[step_count, mj_getState(mjSTATE_INTEGRATION),
task model fields]`` (the latter: reacher's target position, which the task moves every reset).
"""

from __future__ import annotations

import atexit
import functools
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from .base import EnvSpec, MujocoEnv, Obs, StepResult, register

_SUITE_CONTROL_STEPS = 1000  # every task here is 1000 control steps long
_STATE_SIG = mujoco.mjtState.mjSTATE_INTEGRATION


@dataclass(frozen=True)
class GoalSpec:
    """How to pose the scene with the goal achieved.

    ``effector``/``target`` are ``"geom:<name>"``/``"site:<name>"``/``"body:<name>"``; the
    ``joints`` are moved (Gauss-Newton on the effector→target distance) and ``fixed`` joints are
    set to the given values first.
    """

    effector: str | None = None
    target: str | None = None
    joints: tuple[str, ...] = ()
    fixed: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class DMCTask:
    """Static facts about one suite task (see the module docstring for the choices)."""

    domain: str
    task: str
    action_repeat: int
    success_threshold: float
    proprio_keys: tuple[str, ...] = ("position", "velocity")
    #: (obs key, entry, joint name): entries that are raw joint-encoder readings
    encoder_entries: tuple[tuple[str, int, str], ...] = ()
    #: (model field, object name): model entries the task rewrites at reset (part of the state)
    model_state: tuple[tuple[str, str], ...] = ()
    goal: GoalSpec | None = None


TASKS: dict[str, DMCTask] = {
    t.domain + "-" + t.task: t
    for t in (
        DMCTask(
            "reacher",
            "easy",
            4,
            1.0,
            encoder_entries=(("position", 0, "shoulder"), ("position", 1, "wrist")),
            model_state=(("geom_pos", "target"),),
            goal=GoalSpec("geom:finger", "geom:target", ("shoulder", "wrist")),
        ),
        DMCTask(
            "reacher",
            "hard",
            4,
            1.0,
            encoder_entries=(("position", 0, "shoulder"), ("position", 1, "wrist")),
            model_state=(("geom_pos", "target"),),
            goal=GoalSpec("geom:finger", "geom:target", ("shoulder", "wrist")),
        ),
        DMCTask(
            "cartpole",
            "swingup",
            8,
            0.8,
            encoder_entries=(("position", 0, "slider"),),
            goal=GoalSpec(fixed=(("slider", 0.0), ("hinge_1", 0.0))),
        ),
        DMCTask(
            "point_mass",
            "easy",
            4,
            0.8,
            encoder_entries=(("position", 0, "root_x"), ("position", 1, "root_y")),
            goal=GoalSpec("geom:pointmass", "geom:target", ("root_x", "root_y")),
        ),
        DMCTask(
            "finger",
            "spin",
            2,
            1.0,
            encoder_entries=(("position", 0, "proximal"), ("position", 1, "distal")),
        ),
        DMCTask(
            "cheetah",
            "run",
            4,
            0.5,
            encoder_entries=tuple(
                ("position", i + 2, j)
                for i, j in enumerate(("bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"))
            ),
        ),
        # walker observes body orientations, not joint angles: no encoder entries
        DMCTask("walker", "walk", 2, 0.8, proprio_keys=("orientations", "height", "velocity")),
        DMCTask(
            "ball_in_cup",
            "catch",
            4,
            1.0,
            encoder_entries=(("position", 0, "cup_x"), ("position", 1, "cup_z")),
            goal=GoalSpec("site:ball", "site:target", ("ball_x", "ball_z")),
        ),
    )
}


@dataclass
class _Episode:
    steps: int = 0
    done: bool = True


class DMCEnv(MujocoEnv):
    """A dm_control suite task as a :class:`MujocoEnv`.

    Args:
        name: registered task name without the ``dmc-`` prefix, e.g. ``"reacher-easy"``.
        action_repeat: control steps per env step (default: the task's PlaNet value).
        pixels: include ``pixels`` in observations.
        image_size: ``(H, W)`` of observation pixels (an int means square).
        camera: camera name for observations (default: the task's camera 0).
        success_threshold: override of the task's threshold (suite reward units).
        antialias: 4x multisampling like the suite's renderer; ``False`` renders ~2.5x faster
            on software GL at the cost of jagged edges.
        seed: seed of the first ``reset(None)``.
    """

    def __init__(
        self,
        name: str,
        action_repeat: int | None = None,
        pixels: bool = False,
        image_size: int | tuple[int, int] | list[int] = 64,
        camera: str | None = None,
        success_threshold: float | None = None,
        antialias: bool = True,
        seed: int = 0,
    ) -> None:
        from dm_control import suite

        if name not in TASKS:
            raise KeyError(f"unknown DMC task {name!r}; available: {', '.join(sorted(TASKS))}")
        info = TASKS[name]
        self.task_info = info
        repeat = info.action_repeat if action_repeat is None else int(action_repeat)
        if repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        raw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(raw) != 2 or min(int(s) for s in raw) < 1:
            raise ValueError(f"image_size must be an int or (H, W) of positive ints, got {raw}")
        size = (int(raw[0]), int(raw[1]))
        self._suite_env = suite.load(info.domain, info.task, task_kwargs={"random": seed})
        self._physics = self._suite_env.physics
        self._task = self._suite_env.task
        self._repeat = repeat
        self._sub_steps = int(self._suite_env._n_sub_steps)  # physics steps per control step
        self.n_substeps = repeat * self._sub_steps
        self._antialias = bool(antialias)
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._scratch: mujoco.MjData | None = None

        m = self.model
        cam = camera if camera is not None else m.camera(0).name
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam) < 0:
            cams = [m.camera(i).name for i in range(m.ncam)]
            raise ValueError(f"dmc-{name}: no camera {cam!r}; cameras: {cams}")
        self._seed = seed
        self._ep = _Episode()
        # observation layout from one reset (also checks the task builds)
        with self._physics.reset_context():
            self._task.initialize_episode(self._physics)
        raw = self._task.get_observation(self._physics)
        sizes = {k: int(np.asarray(v).size) for k, v in raw.items()}
        starts = np.cumsum([0, *sizes.values()])
        offset = dict(zip(sizes, starts[:-1].tolist(), strict=False))
        missing = [k for k in info.proprio_keys if k not in sizes]
        if missing:
            raise RuntimeError(f"dmc-{name}: observation lacks proprio keys {missing}")
        self._proprio_idx = np.concatenate(
            [np.arange(offset[k], offset[k] + sizes[k]) for k in info.proprio_keys]
        )
        proprio_pos = {int(i): p for p, i in enumerate(self._proprio_idx)}
        state_idx = [offset[k] + e for k, e, _ in info.encoder_entries]
        joint_ids = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j) for _, _, j in info.encoder_entries]
        encoder_index = {
            "state": {"index": tuple(state_idx), "joint": tuple(joint_ids)},
            "proprio": {
                "index": tuple(proprio_pos[i] for i in state_idx if i in proprio_pos),
                "joint": tuple(
                    j for i, j in zip(state_idx, joint_ids, strict=True) if i in proprio_pos
                ),
            },
        }
        spec_act = self._suite_env.action_spec()
        obs_shapes: dict[str, tuple[int, ...]] = {
            "state": (int(starts[-1]),),
            "proprio": (len(self._proprio_idx),),
        }
        if pixels:
            obs_shapes["pixels"] = (size[0], size[1], 3)
        control_dt = float(self._suite_env.control_timestep()) * repeat
        self.spec = EnvSpec(
            name=f"dmc-{name}",
            obs_shapes=obs_shapes,
            action_low=tuple(float(x) for x in np.broadcast_to(spec_act.minimum, spec_act.shape)),
            action_high=tuple(float(x) for x in np.broadcast_to(spec_act.maximum, spec_act.shape)),
            control_dt=control_dt,
            episode_length=-(-_SUITE_CONTROL_STEPS // repeat),
            action_repeat=repeat,
            camera=cam,
            image_size=(size[0], size[1]),
            pixels=bool(pixels),
            success_threshold=(
                info.success_threshold if success_threshold is None else float(success_threshold)
            ),
            extra={
                "domain": info.domain,
                "task": info.task,
                "encoder_index": encoder_index,
                "has_goal_image": info.goal is not None,
            },
        )
        self._model_state = [
            (fname, self._id(_FIELD_OBJ[fname], obj)) for fname, obj in info.model_state
        ]

    # -- MujocoEnv ---------------------------------------------------------------------------
    @property
    def model(self) -> mujoco.MjModel:
        return self._physics.model.ptr

    @property
    def data(self) -> mujoco.MjData:
        return self._physics.data.ptr

    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` (for task code that needs named indexing)."""
        return self._physics

    def _id(self, obj: mujoco.mjtObj, name: str) -> int:
        i = mujoco.mj_name2id(self.model, obj, name)
        if i < 0:
            raise KeyError(
                f"{self.spec.name if hasattr(self, 'spec') else 'dmc'}: no {obj} {name!r}"
            )
        return int(i)

    def reset(self, seed: int | None = None) -> Obs:
        if seed is not None:
            # the suite task draws its initial state from this RandomState
            self._task._random = np.random.RandomState(int(seed))
        with self._physics.reset_context():
            self._task.initialize_episode(self._physics)
        self._ep = _Episode(steps=0, done=False)
        return self._observe()

    def step(self, action: np.ndarray) -> StepResult:
        if self._ep.done:
            raise RuntimeError(f"{self.spec.name}: episode is over; call reset() first")
        a = self.clip_action(action)
        reward = 0.0
        r = 0.0
        discount = None
        for _ in range(self._repeat):
            self._task.before_step(a, self._physics)
            self._physics.step(self._sub_steps)
            self._task.after_step(self._physics)
            r = float(self._task.get_reward(self._physics))
            reward += r
            discount = self._task.get_termination(self._physics)
            if discount is not None:
                break
        self._ep.steps += 1
        terminated = discount is not None
        truncated = not terminated and self._ep.steps >= self.spec.episode_length
        self._ep.done = terminated or truncated
        thr = self.spec.success_threshold
        info = {"success": bool(thr is not None and r >= thr), "last_reward": r}
        return self._observe(), reward, terminated, truncated, info

    def _observe(self) -> Obs:
        raw = self._task.get_observation(self._physics)
        state = np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for v in raw.values()])
        obs: Obs = {"state": state, "proprio": state[self._proprio_idx]}
        if self.spec.pixels:
            obs["pixels"] = self.render()
        return obs

    # -- rendering ---------------------------------------------------------------------------
    def _renderer(self, size: tuple[int, int]) -> mujoco.Renderer:
        r = self._renderers.get(size)
        if r is None:
            m = self.model
            vis = m.vis.quality
            old = (vis.shadowsize, vis.offsamples)
            # A shadow map 8x the image side is indistinguishable from the suite's 2048 at
            # small sizes and renders ~2x faster on software GL; the model is restored after.
            vis.shadowsize = int(min(old[0], max(256, 8 * max(size))))
            vis.offsamples = old[1] if self._antialias else 0
            try:
                r = mujoco.Renderer(m, height=size[0], width=size[1])
            finally:
                vis.shadowsize, vis.offsamples = old
            if not self._renderers:
                # registered after the GL backend's own exit hook, so it runs first (LIFO) and
                # frees the contexts while the EGL display is still alive
                atexit.register(_close_renderers, self._renderers)
            self._renderers[size] = r
        return r

    def _render_data(
        self, data: mujoco.MjData, camera: str | None, size: tuple[int, int] | None
    ) -> np.ndarray:
        hw = self.spec.image_size if size is None else (int(size[0]), int(size[1]))
        r = self._renderer(hw)
        r.update_scene(data, camera=self.spec.camera if camera is None else camera)
        return r.render()

    def render(self, camera: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        return self._render_data(self.data, camera, size)

    def goal_image(
        self, camera: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        return self._render_data(self._goal_data(), camera, size)

    def goal_state(self) -> np.ndarray:
        """:meth:`get_state` with the goal configuration posed (velocities zero)."""
        d = self._goal_data()
        sim = np.empty(mujoco.mj_stateSize(self.model, _STATE_SIG), np.float64)
        mujoco.mj_getState(self.model, d, sim, _STATE_SIG)
        extra = [getattr(self.model, f)[i].astype(np.float64).ravel() for f, i in self._model_state]
        return np.concatenate([[float(self._ep.steps)], sim, *extra])

    def _goal_data(self) -> mujoco.MjData:
        """A scratch ``MjData`` posed with the goal achieved (the running simulation untouched)."""
        goal = self.task_info.goal
        if goal is None:
            raise NotImplementedError(
                f"{self.spec.name} has no goal configuration (locomotion/spinning task); "
                "goal images exist for reacher, point_mass, ball_in_cup and cartpole-swingup"
            )
        if self._scratch is None:
            self._scratch = mujoco.MjData(self.model)
        d = self._scratch
        m = self.model
        d.qpos[:] = self.data.qpos
        d.qvel[:] = 0.0
        d.time = self.data.time
        for jname, value in goal.fixed:
            d.qpos[m.jnt_qposadr[self._id(mujoco.mjtObj.mjOBJ_JOINT, jname)]] = value
        if goal.effector is not None and goal.target is not None:
            self._solve_goal_pose(d, goal)
        mujoco.mj_forward(m, d)
        return d

    def _point(self, d: mujoco.MjData, ref: str) -> tuple[np.ndarray, int]:
        """World position and body id of ``"geom:name"``/``"site:name"``/``"body:name"``."""
        kind, name = ref.split(":", 1)
        m = self.model
        if kind == "geom":
            i = self._id(mujoco.mjtObj.mjOBJ_GEOM, name)
            return d.geom_xpos[i].copy(), int(m.geom_bodyid[i])
        if kind == "site":
            i = self._id(mujoco.mjtObj.mjOBJ_SITE, name)
            return d.site_xpos[i].copy(), int(m.site_bodyid[i])
        i = self._id(mujoco.mjtObj.mjOBJ_BODY, name)
        return d.xpos[i].copy(), i

    def _solve_goal_pose(self, d: mujoco.MjData, goal: GoalSpec, iters: int = 50) -> None:
        """Gauss-Newton (damped) on ``|effector - target|^2`` over ``goal.joints`` (1-DoF each)."""
        assert goal.effector is not None
        assert goal.target is not None
        m = self.model
        jids = [self._id(mujoco.mjtObj.mjOBJ_JOINT, j) for j in goal.joints]
        qadr = m.jnt_qposadr[jids]
        dadr = m.jnt_dofadr[jids]
        jacp = np.zeros((3, m.nv))
        for _ in range(iters):
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            p, body = self._point(d, goal.effector)
            t, _ = self._point(d, goal.target)
            err = t - p
            if goal.effector.startswith("geom") and goal.target.startswith("geom"):
                # planar tasks: the target floats above the plane the effector moves in
                err[2] = 0.0
            if np.linalg.norm(err) < 1e-6:
                break
            mujoco.mj_jac(m, d, jacp, None, p, body)
            j = jacp[:, dadr]
            dq = np.linalg.solve(j.T @ j + 1e-6 * np.eye(len(jids)), j.T @ err)
            d.qpos[qadr] += dq
            lim = m.jnt_limited[jids].astype(bool)
            rng = m.jnt_range[jids]
            d.qpos[qadr] = np.where(lim, np.clip(d.qpos[qadr], rng[:, 0], rng[:, 1]), d.qpos[qadr])

    # -- state -------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        n = mujoco.mj_stateSize(self.model, _STATE_SIG)
        sim = np.empty(n, np.float64)
        mujoco.mj_getState(self.model, self.data, sim, _STATE_SIG)
        extra = [getattr(self.model, f)[i].astype(np.float64).ravel() for f, i in self._model_state]
        return np.concatenate([[float(self._ep.steps)], sim, *extra])

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        n = mujoco.mj_stateSize(self.model, _STATE_SIG)
        sizes = [getattr(self.model, f)[i].size for f, i in self._model_state]
        if s.shape != (1 + n + sum(sizes),):
            raise ValueError(
                f"{self.spec.name}: state must have shape ({1 + n + sum(sizes)},), got {s.shape}"
            )
        off = 1 + n
        for (f, i), k in zip(self._model_state, sizes, strict=True):
            getattr(self.model, f)[i] = s[off : off + k]
            off += k
        mujoco.mj_setState(self.model, self.data, s[1 : 1 + n], _STATE_SIG)
        # derived quantities (positions, sensors) for observations; mj_forward overwrites the
        # solver warm start, so restore the exact integration state afterwards
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_setState(self.model, self.data, s[1 : 1 + n], _STATE_SIG)
        steps = int(s[0])
        self._ep = _Episode(steps=steps, done=steps >= self.spec.episode_length)

    def close(self) -> None:
        _close_renderers(self._renderers)


def _close_renderers(renderers: dict[tuple[int, int], mujoco.Renderer]) -> None:
    for r in renderers.values():
        r.close()
    renderers.clear()


_FIELD_OBJ = {
    "geom_pos": mujoco.mjtObj.mjOBJ_GEOM,
    "geom_size": mujoco.mjtObj.mjOBJ_GEOM,
    "site_pos": mujoco.mjtObj.mjOBJ_SITE,
    "body_pos": mujoco.mjtObj.mjOBJ_BODY,
}


def _factory(task_name: str, **kwargs: Any) -> DMCEnv:
    return DMCEnv(task_name, **kwargs)


for _name in TASKS:
    register(f"dmc-{_name}")(functools.partial(_factory, _name))

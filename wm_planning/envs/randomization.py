"""Domain randomization for any :class:`~wm_planning.envs.base.MujocoEnv`.

:class:`RandomizedEnv` wraps an env and, on every ``reset(seed)``, restores the nominal model
parameters captured when it was built, samples new ones from a generator seeded by
``(salt, seed, knob)`` and writes them into ``env.model`` before the inner reset, so nothing
accumulates across resets, the same seed gives the same perturbation, and turning one knob on
does not change another knob's sample. Only the base API is used: ``model``/``data``,
``n_substeps``, ``spec`` (``spec.extra["encoder_index"]`` for encoder offsets and the optional
``spec.extra["noop_action"]`` for the latency queue's initial fill).

Knobs (:class:`RandomizationConfig`, 0 turns one off; "scale x" means a factor drawn from
``U(1-x, 1+x)``):

=================  ===========================================================================
``mass``           scale per body of ``body_mass`` and ``body_inertia`` (uniform density change),
                   then ``mj_setConst``
``friction``       scale per geom of ``geom_friction`` (all three coefficients)
``damping``        scale per dof of ``dof_damping``
``gain``           scale per actuator of its strength: position servos (affine bias) scale
                   ``gainprm[0]`` (kp) and ``biasprm[1]`` (-kp) together; motors scale ``gear``
``encoder_offset`` offset per joint ``U(-x, x)`` (rad; m for slide joints) added to the joint
                   readings in ``state``/``proprio`` only (the simulation is untouched); the
                   env declares which entries are readings in ``spec.extra["encoder_index"] =
                   {"state": {"index": (...), "joint": (...)}, "proprio": {...}}``
``camera_pos``     offset per camera and axis ``U(-x, x)`` m (``cam_pos``/``cam_pos0``/
                   ``cam_poscom0``)
``camera_rot``     rotation per camera about a uniformly random axis of its own frame by
                   ``U(-x, x)`` degrees
``camera_fov``     ``cam_fovy`` offset ``U(-x, x)`` degrees
``light``          scale of diffuse and of ambient per light and for the headlight
``color``          offset ``U(-x, x)`` per rgb channel of material colours (``mat_rgba``) and
                   of material-less geoms (``geom_rgba``), clipped to [0, 1]
``obs_noise``      Gaussian std added to ``state`` and ``proprio`` (not to the simulation)
``pixel_noise``    Gaussian std (0..255 units) added to ``pixels``, rounded and clipped
``action_noise``   Gaussian std, as a fraction of the action half-range, added to each action
``latency``        integer control steps: the action applied at step t is the one commanded at
                   ``t - latency``; the queue starts filled with ``noop_action`` (default: the
                   centre of the action box)
``control_rate``   scale of ``opt.timestep``: physics time per control step changes while the
                   policy still acts at the same step count
=================  ===========================================================================

Noise during an episode is drawn from a generator seeded by ``(salt, seed, step)``, so
``get_state``/``set_state`` (inner state + step count + latency queue) round-trip exactly.
Caveat: task code that rewrites a randomized field at its own reset wins for that entry (e.g.
dm_control finger-spin sets the spinner hinge's damping every reset).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from .base import MujocoEnv, Obs, StepResult

_SALT = 0x5EED_D0DA  # separates randomization streams from the env's own seed use
_KNOBS = (
    "mass",
    "friction",
    "damping",
    "gain",
    "encoder_offset",
    "camera_pos",
    "camera_rot",
    "camera_fov",
    "light",
    "color",
    "obs_noise",
    "pixel_noise",
    "action_noise",
    "latency",
    "control_rate",
)
_RELATIVE = ("mass", "friction", "damping", "gain", "light", "control_rate")


@dataclass(frozen=True)
class RandomizationConfig:
    """Strength of each knob (module docstring); 0 = off."""

    mass: float = 0.0
    friction: float = 0.0
    damping: float = 0.0
    gain: float = 0.0
    encoder_offset: float = 0.0
    camera_pos: float = 0.0
    camera_rot: float = 0.0
    camera_fov: float = 0.0
    light: float = 0.0
    color: float = 0.0
    obs_noise: float = 0.0
    pixel_noise: float = 0.0
    action_noise: float = 0.0
    latency: int = 0
    control_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "latency":
                if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                    raise ValueError(f"randomization.latency must be an int >= 0, got {v!r}")
                object.__setattr__(self, f.name, int(v))
                continue
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise ValueError(f"randomization.{f.name} must be a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"randomization.{f.name} must be finite and >= 0, got {v}")
            if f.name in _RELATIVE and v >= 1:
                raise ValueError(f"randomization.{f.name} is a relative range and must be < 1")
            if f.name == "color" and v > 1:
                raise ValueError(f"randomization.color must be <= 1, got {v}")
            object.__setattr__(self, f.name, v)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RandomizationConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown randomization knobs {unknown}; known: {list(_KNOBS)}")
        return cls(**d)

    @property
    def is_nominal(self) -> bool:
        return all(getattr(self, k) == 0 for k in _KNOBS)


# model fields restored on every reset (all knobs that edit the model)
_MODEL_FIELDS = (
    "body_mass",
    "body_inertia",
    "geom_friction",
    "dof_damping",
    "actuator_gainprm",
    "actuator_biasprm",
    "actuator_gear",
    "cam_pos",
    "cam_pos0",
    "cam_poscom0",
    "cam_quat",
    "cam_mat0",
    "cam_fovy",
    "light_diffuse",
    "light_ambient",
    "geom_rgba",
    "mat_rgba",
)


def _scale(rng: np.random.Generator, x: float, n: int) -> np.ndarray:
    return rng.uniform(1 - x, 1 + x, size=n) if x > 0 else np.ones(n)


def _quat_from_rotvec(v: np.ndarray) -> np.ndarray:
    """``N×3`` rotation vectors (rad) → ``N×4`` unit quaternions (w, x, y, z)."""
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = np.divide(v, angle, out=np.zeros_like(v), where=angle > 0)
    return np.concatenate([np.cos(angle / 2), axis * np.sin(angle / 2)], axis=-1)


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(*q.shape[:-1], 3, 3)


class RandomizedEnv(MujocoEnv):
    """Wraps ``env`` with the perturbations of ``config`` (see the module docstring).

    ``physics_params()`` returns the values sampled at the last reset (arrays; identity values
    for knobs that are off), also given as ``info["physics"]`` on every step and as
    ``reset_info["physics"]`` after each reset.
    """

    def __init__(self, env: MujocoEnv, config: RandomizationConfig, salt: int = _SALT) -> None:
        if not isinstance(env, MujocoEnv):
            raise TypeError(f"RandomizedEnv needs a MujocoEnv, got {type(env).__name__}")
        if not isinstance(config, RandomizationConfig):
            raise TypeError(f"config must be a RandomizationConfig, got {type(config).__name__}")
        self.env = env
        self.config = config
        self.spec = env.spec
        self.n_substeps = env.n_substeps
        self._salt = int(salt)
        m = env.model
        # The nominal snapshot lives on the wrapped env, so a second wrapper of the same env
        # (e.g. a sweep over configs) starts from the true nominal, not from a perturbed model.
        if not hasattr(env, "_randomization_nominal"):
            env._randomization_nominal = (  # type: ignore[attr-defined]
                {f: np.array(getattr(m, f), copy=True) for f in _MODEL_FIELDS},
                float(m.opt.timestep),
                (
                    np.array(m.vis.headlight.diffuse, copy=True),
                    np.array(m.vis.headlight.ambient, copy=True),
                ),
            )
        self._nominal, self._nominal_timestep, self._nominal_headlight = env._randomization_nominal  # type: ignore[attr-defined]
        self._scratch = mujoco.MjData(m)
        if config.encoder_offset > 0 and "encoder_index" not in env.spec.extra:
            raise ValueError(
                f"{env.spec.name} does not declare spec.extra['encoder_index'], so encoder "
                "offsets cannot be applied; set randomization.encoder_offset=0"
            )
        enc = env.spec.extra.get("encoder_index", {})
        self._encoder = {
            k: (np.asarray(v["index"], dtype=np.int64), np.asarray(v["joint"], dtype=np.int64))
            for k, v in enc.items()
        }
        low, high = np.asarray(env.spec.action_low), np.asarray(env.spec.action_high)
        self._half_range = (high - low) / 2
        noop = env.spec.extra.get("noop_action")
        self._noop = (low + high) / 2 if noop is None else np.asarray(noop, dtype=np.float64)
        if self._noop.shape != low.shape:
            raise ValueError(f"noop_action must have shape {low.shape}, got {self._noop.shape}")
        self._seed = 0
        self._step = 0
        self._queue = np.tile(self._noop, (config.latency, 1))
        self._params: dict[str, np.ndarray] = {}
        self.reset_info: dict[str, Any] = {}

    # -- MujocoEnv passthrough ---------------------------------------------------------------
    @property
    def model(self) -> Any:
        return self.env.model

    @property
    def data(self) -> Any:
        return self.env.data

    def render(self, camera: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        return self.env.render(camera, size)

    def goal_image(
        self, camera: str | None = None, size: tuple[int, int] | None = None
    ) -> np.ndarray:
        return self.env.goal_image(camera, size)

    def evaluate(self) -> tuple[float, bool]:
        """The true task distance and success (perturbations change the physics, not the task)."""
        return self.env.evaluate()

    def close(self) -> None:
        self.env.close()

    def physics_params(self) -> dict[str, np.ndarray]:
        """Values sampled at the last reset (copies)."""
        return {k: v.copy() for k, v in self._params.items()}

    # -- sampling ----------------------------------------------------------------------------
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self._salt, self._seed, *key])

    def _sample(self) -> dict[str, np.ndarray]:
        c, m = self.config, self.model
        g = {k: self._rng(0, i) for i, k in enumerate(_KNOBS)}
        ncam = m.ncam
        axis = g["camera_rot"].normal(size=(ncam, 3))
        axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
        angle = g["camera_rot"].uniform(-c.camera_rot, c.camera_rot, size=(ncam, 1))

        def sym(knob: str, x: float, shape: tuple[int, ...]) -> np.ndarray:
            return g[knob].uniform(-x, x, size=shape) if x > 0 else np.zeros(shape)

        return {
            "seed": np.asarray(self._seed, dtype=np.int64),
            "mass_scale": _scale(g["mass"], c.mass, m.nbody),
            "friction_scale": _scale(g["friction"], c.friction, m.ngeom),
            "damping_scale": _scale(g["damping"], c.damping, m.nv),
            "gain_scale": _scale(g["gain"], c.gain, m.nu),
            "encoder_offset": sym("encoder_offset", c.encoder_offset, (m.njnt,)),
            "camera_pos_offset": sym("camera_pos", c.camera_pos, (ncam, 3)),
            "camera_rot_deg": axis * angle,  # rotation vector, degrees
            "camera_fov_offset": sym("camera_fov", c.camera_fov, (ncam,)),
            "light_scale": _scale(g["light"], c.light, 2 * (m.nlight + 1)).reshape(-1, 2),
            "geom_color_offset": sym("color", c.color, (m.ngeom, 3)),
            "material_color_offset": sym("color", c.color, (m.nmat, 3)),
            "timestep_scale": np.asarray(_scale(g["control_rate"], c.control_rate, 1)[0]),
            "latency": np.asarray(c.latency, dtype=np.int64),
        }

    def _apply(self, p: dict[str, np.ndarray]) -> None:
        """Restore the nominal model, then write the sampled values into it."""
        c, m, nom = self.config, self.model, self._nominal
        for f in _MODEL_FIELDS:
            getattr(m, f)[...] = nom[f]
        m.opt.timestep = self._nominal_timestep
        m.vis.headlight.diffuse[:], m.vis.headlight.ambient[:] = self._nominal_headlight
        if c.mass:
            m.body_mass[:] = nom["body_mass"] * p["mass_scale"]
            m.body_inertia[:] = nom["body_inertia"] * p["mass_scale"][:, None]
        if c.mass or getattr(self.env, "_randomization_setconst", False):
            # derived constants (subtree masses, dof inverse weights used by the constraint
            # solver) follow the masses; also after a mass-randomized reset of this env by any
            # wrapper, to restore the nominal ones. It recomputes camera/light reference poses
            # too, so it runs before the camera knobs below.
            mujoco.mj_setConst(m, self._scratch)
            self.env._randomization_setconst = bool(c.mass)  # type: ignore[attr-defined]
        if c.is_nominal:
            return
        if c.friction:
            m.geom_friction[:] = nom["geom_friction"] * p["friction_scale"][:, None]
        if c.damping:
            m.dof_damping[:] = nom["dof_damping"] * p["damping_scale"]
        if c.gain:
            s = p["gain_scale"]
            servo = m.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE
            motor = (m.actuator_biastype == mujoco.mjtBias.mjBIAS_NONE) & (
                m.actuator_gaintype == mujoco.mjtGain.mjGAIN_FIXED
            )
            other = ~servo & ~motor
            m.actuator_gainprm[:, 0] = nom["actuator_gainprm"][:, 0] * np.where(servo | other, s, 1)
            m.actuator_biasprm[:, 1] = nom["actuator_biasprm"][:, 1] * np.where(servo, s, 1)
            m.actuator_gear[:] = nom["actuator_gear"] * np.where(motor, s, 1)[:, None]
        if c.camera_pos:
            off = p["camera_pos_offset"]
            m.cam_pos[:] = m.cam_pos + off
            m.cam_pos0[:] = m.cam_pos0 + off
            m.cam_poscom0[:] = m.cam_poscom0 + off
        if c.camera_rot:
            dq = _quat_from_rotvec(np.deg2rad(p["camera_rot_deg"]))
            q = _quat_mul(m.cam_quat, dq)  # rotate in the camera's own frame
            m.cam_quat[:] = q / np.linalg.norm(q, axis=1, keepdims=True)
            mat0 = m.cam_mat0.reshape(-1, 3, 3) @ _quat_to_mat(dq)
            m.cam_mat0[:] = mat0.reshape(m.cam_mat0.shape)
        if c.camera_fov:
            m.cam_fovy[:] = np.clip(nom["cam_fovy"] + p["camera_fov_offset"], 1.0, 179.0)
        if c.light:
            ls = p["light_scale"]
            m.light_diffuse[:] = nom["light_diffuse"] * ls[:-1, :1]
            m.light_ambient[:] = nom["light_ambient"] * ls[:-1, 1:]
            m.vis.headlight.diffuse[:] = self._nominal_headlight[0] * ls[-1, 0]
            m.vis.headlight.ambient[:] = self._nominal_headlight[1] * ls[-1, 1]
        if c.color:
            no_mat = m.geom_matid < 0  # geoms with a material take the material's colour
            rgb = nom["geom_rgba"][:, :3] + p["geom_color_offset"] * no_mat[:, None]
            m.geom_rgba[:, :3] = np.clip(rgb, 0, 1)
            m.mat_rgba[:, :3] = np.clip(nom["mat_rgba"][:, :3] + p["material_color_offset"], 0, 1)
        if c.control_rate:
            m.opt.timestep = self._nominal_timestep * float(p["timestep_scale"])

    # -- episode -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> Obs:
        if seed is None:
            seed = int(np.random.default_rng().integers(2**31))
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self._seed = int(seed)
        self._params = self._sample()
        self._apply(self._params)
        self.n_substeps = self.env.n_substeps
        self._step = 0
        self._queue = np.tile(self._noop, (self.config.latency, 1))
        self.reset_info = {"physics": self._params, "seed": self._seed}
        return self._perturb_obs(self.env.reset(seed=self._seed))

    def step(self, action: np.ndarray) -> StepResult:
        a = self.clip_action(action)
        c = self.config
        rng = self._rng(1, self._step) if (c.action_noise or c.obs_noise or c.pixel_noise) else None
        if c.action_noise and rng is not None:
            a = a + rng.normal(0.0, c.action_noise, size=a.shape) * self._half_range
        if c.latency:
            self._queue = np.concatenate([self._queue, a[None]])
            a, self._queue = self._queue[0], self._queue[1:]
        obs, reward, terminated, truncated, info = self.env.step(a)
        self._step += 1
        info = {**info, "physics": self._params, "applied_action": a}
        return self._perturb_obs(obs, rng), reward, terminated, truncated, info

    def _perturb_obs(self, obs: Obs, rng: np.random.Generator | None = None) -> Obs:
        c = self.config
        if not (c.encoder_offset or c.obs_noise or c.pixel_noise):
            return obs
        if rng is None:
            rng = self._rng(2)  # the reset observation's noise
        out = dict(obs)
        for key in ("state", "proprio"):
            if key not in out:
                continue
            x = out[key].copy()
            if c.encoder_offset and key in self._encoder:
                idx, jnt = self._encoder[key]
                x[idx] += self._params["encoder_offset"][jnt].astype(x.dtype)
            if c.obs_noise:
                x += rng.normal(0.0, c.obs_noise, size=x.shape).astype(x.dtype)
            out[key] = x
        if c.pixel_noise and "pixels" in out:
            noisy = out["pixels"] + rng.normal(0.0, c.pixel_noise, size=out["pixels"].shape)
            out["pixels"] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return out

    # -- state -------------------------------------------------------------------------------
    def get_state(self) -> np.ndarray:
        """``[inner state, step, latency queue (latency×A)]``."""
        return np.concatenate([self.env.get_state(), [float(self._step)], self._queue.ravel()])

    def set_state(self, state: np.ndarray) -> None:
        s = np.asarray(state, dtype=np.float64).reshape(-1)
        nq = self._queue.size
        if s.size < 1 + nq:
            raise ValueError(f"state too short for {self.spec.name} with latency: {s.size}")
        inner = s[: s.size - 1 - nq]
        self.env.set_state(inner)
        self._step = int(s[inner.size])
        self._queue = s[inner.size + 1 :].reshape(self._queue.shape).copy()

"""Evaluation policies: a world model × a planner, acting closed-loop in a (randomized) env.

A policy is registered by name with :func:`register_policy` and built by :func:`make_policy`
from the composed ``eval`` config:

``mujoco``      exact MuJoCo dynamics bound to a *nominal twin* of the env (the natural "sim"
                model): the real env may be randomized, the twin never is, so planning with it in
                a randomized env measures the sim-to-real gap. Each step the twin's state is the
                real env's true physics state with the joint readings replaced by what the robot
                observes (``obs["proprio"]``, so encoder offsets and observation noise count);
                latency, action noise and every physical knob act only on the real env.
                ``mujoco.twin_scale`` deliberately mis-scales the twin (mass, servo gain,
                damping) to build a broken model.
``checkpoint``  a trained learned model (``wm_planning.training``): the checkpoint's planner,
                cost and receding horizon through :class:`~wm_planning.training.agent.Agent`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wm_planning.control import Controller
from wm_planning.envs.randomization import RandomizationConfig, RandomizedEnv
from wm_planning.registry import Registry


@dataclass(frozen=True)
class PolicyConfig:
    """What to plan with (see the module docstring and ``configs/eval.yaml``)."""

    policy: str
    checkpoint: str | None = None
    env: str | None = None
    planner: str | None = None
    planner_options: Mapping[str, Any] | None = None
    horizon: int | None = None
    num_prior: int | None = None
    replan_every: int | None = None
    device: str = "cpu"
    nthread: int | None = None
    twin_scale: Mapping[str, float] | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "twin_scale", dict(self.twin_scale or {}))
        assert self.twin_scale is not None
        if self.policy == "checkpoint" and not self.checkpoint:
            raise ValueError("policy 'checkpoint' needs checkpoint=PATH")
        if self.checkpoint and self.policy != "checkpoint":
            raise ValueError(f"checkpoint= is given but model={self.policy!r}; drop one of them")
        for k, v in self.twin_scale.items():
            if k not in _TWIN_SCALES:
                raise ValueError(f"unknown twin_scale {k!r}; known: {sorted(_TWIN_SCALES)}")
            if not float(v) > 0:
                raise ValueError(f"twin_scale.{k} must be > 0, got {v}")
        for name in ("horizon", "replan_every", "nthread"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")


class Policy(ABC):
    """Closed-loop acting plus the hooks the harness measures with.

    After :meth:`act`, ``replanned`` says whether it planned this step, ``plan_time_s`` how long
    that took and ``raw_out_of_box`` whether the planner's action for this step lay outside the
    action box before the controller clamped it.
    """

    label: str
    planner_name: str
    env_name: str
    pixels: bool = False
    image_size: int = 64
    action_repeat: int | None = None  # a checkpoint's training value (None: the task preset's)
    replanned: bool = False
    plan_time_s: float | None = None
    raw_out_of_box: bool = False

    @abstractmethod
    def reset(self, env: RandomizedEnv, seed: int) -> None: ...

    @abstractmethod
    def act(self, obs: Mapping[str, np.ndarray], env: RandomizedEnv) -> np.ndarray:
        """Action ``A`` (inside the box) for ``obs`` observed from ``env``."""

    @abstractmethod
    def predict(
        self, obs: Mapping[str, np.ndarray], env: RandomizedEnv, actions: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The model's open-loop prediction from the current state for ``actions`` ``K×H×A``:
        ``{"reward": K×H}`` plus ``"distance"`` ``K×H`` where the model predicts it."""

    def imagined_frame(self, size: tuple[int, int], camera: str | None) -> np.ndarray | None:
        """``H×W×3`` uint8 picture of where the last plan is predicted to end, or ``None``."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def _note_plan(self, ctrl: Controller, before: object) -> None:
        """Fill ``replanned``/``plan_time_s``/``raw_out_of_box`` after ``ctrl.act``."""
        self.replanned = ctrl.last_result is not before
        self.plan_time_s = ctrl.plan_time_s if self.replanned else None
        res = ctrl.last_result
        if res is None:
            self.raw_out_of_box = False
            return
        # index of the action just executed: the plan's first replan_every minus what is queued
        idx = ctrl.replan_every - int(ctrl.queue.shape[0]) - 1
        raw = res.actions.detach()[idx].cpu().double()
        low, high = (b.cpu().double() for b in ctrl.planner.bounds(torch.device("cpu")))
        self.raw_out_of_box = bool(((raw < low - 1e-9) | (raw > high + 1e-9)).any())


PolicyFactory = Callable[[PolicyConfig], Policy]
_POLICIES: Registry[PolicyFactory] = Registry("eval policy")
#: Decorator registering a policy factory under a name (``model=<name>``).
register_policy = _POLICIES.register


def make_policy(cfg: PolicyConfig) -> Policy:
    return _POLICIES.get(cfg.policy)(cfg)


def available_policies() -> list[str]:
    return list(_POLICIES.available())


# -- exact physics on a nominal twin ---------------------------------------------------------------
_TWIN_SCALES = ("mass", "gain", "damping")


def scale_model(model: Any, scales: Mapping[str, float]) -> None:
    """Multiply ``model``'s masses (+ inertias), position-servo gains (kp and -kp together) or
    motor gears, and joint damping by ``scales`` in place (a deliberately wrong model)."""
    import mujoco

    if "mass" in scales:
        model.body_mass[:] *= scales["mass"]
        model.body_inertia[:] *= scales["mass"]
        mujoco.mj_setConst(model, mujoco.MjData(model))
    if "damping" in scales:
        model.dof_damping[:] *= scales["damping"]
    if "gain" in scales:
        s = float(scales["gain"])
        servo = model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE
        model.actuator_gainprm[:, 0] *= s
        model.actuator_biasprm[servo, 1] *= s


def _demo_defaults() -> dict[str, Any]:
    """``configs/demo.yaml`` (the exact-dynamics budget ``wm-plan demo``/``solve`` use)."""
    from omegaconf import OmegaConf

    from wm_planning.config import config_dir

    raw = OmegaConf.to_container(OmegaConf.load(config_dir() / "demo.yaml"), resolve=True)
    assert isinstance(raw, dict)
    out = {str(k): v for k, v in raw.items()}
    # the defaults list's group choices ({robot: planar}, {task: reach}, {planner: mppi}, ...)
    out["choices"] = {
        str(k): v for d in out.get("defaults", []) if isinstance(d, dict) for k, v in d.items()
    }
    return out


@dataclass(frozen=True)
class MujocoSettings:
    """What ``model=mujoco`` plans with, resolved against ``configs/demo.yaml``; shared by the
    in-process policy and the planner node of ``path=ros`` so both plan alike."""

    env_name: str
    planner_name: str
    #: applied on top of ``configs/planner/<planner_name>.yaml``
    planner_options: dict[str, Any]
    horizon: int
    replan_every: int
    nthread: int


def mujoco_settings(cfg: PolicyConfig) -> MujocoSettings:
    demo = _demo_defaults()
    choices = demo["choices"]
    default_name = str(choices["planner"])
    planner_name = cfg.planner or default_name
    # demo's light budget is for its own planner only
    options = dict(demo.get("planner") or {}) if planner_name == default_name else {}
    options.update(dict(cfg.planner_options or {}))
    return MujocoSettings(
        env_name=cfg.env or f"{choices['robot']}-{choices['task']}",
        planner_name=planner_name,
        planner_options=options,
        horizon=int(cfg.horizon or demo["horizon"]),
        replan_every=int(cfg.replan_every or demo["replan_every"]),
        nthread=int(cfg.nthread or demo["nthread"]),
    )


@register_policy("mujoco")
class MujocoTwinPolicy(Policy):
    """Exact-dynamics MPC on a nominal twin env (module docstring). Planner defaults: the
    ``demo``/``solve`` commands' (``configs/demo.yaml``: MPPI, its budget, horizon, threads)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        from wm_planning import planners
        from wm_planning.config import load_group
        from wm_planning.models.mujoco_dynamics import MujocoDynamics
        from wm_planning.training import make_env

        s = mujoco_settings(cfg)
        self.env_name = s.env_name
        self.twin = make_env(self.env_name, False, self.image_size)
        twin_scale = {k: float(v) for k, v in (cfg.twin_scale or {}).items()}
        if twin_scale:
            scale_model(self.twin.model, twin_scale)
        self.dyn = MujocoDynamics(self.twin, nthread=s.nthread)
        self.planner_name = s.planner_name
        spec = self.twin.spec
        self.planner = planners.from_config(
            {**load_group("planner", s.planner_name), **s.planner_options},
            horizon=s.horizon,
            action_low=spec.action_low,
            action_high=spec.action_high,
        )
        self.replan_every = s.replan_every
        self.ctrl = Controller(
            self.planner, generator=torch.Generator(), replan_every=self.replan_every
        )
        scale = "".join(f",{k}x{v:g}" for k, v in sorted(twin_scale.items()))
        self.label = (
            cfg.label or f"mujoco{'[' + scale[1:] + ']' if scale else ''}/{self.planner_name}"
        )
        self._plan_state: np.ndarray | None = None
        self._plan: np.ndarray | None = None

    def reset(self, env: RandomizedEnv, seed: int) -> None:
        self.twin.reset(seed)
        self.ctrl.reset()
        self.ctrl.generator.manual_seed(seed)
        self._plan_state = self._plan = None

    def _estimate(self, obs: Mapping[str, np.ndarray], env: RandomizedEnv) -> np.ndarray:
        """The real env's true state with the joint readings moved by what ``obs["proprio"]``
        adds to them (encoder offsets, observation noise): exact when those knobs are off."""
        state = np.array(env.env.get_state(), dtype=np.float64)
        phys = self.twin.split_state(state)["physics"]  # view into state
        qi = self.twin.qpos_offset + self.twin._qadr
        vi = self.twin.qvel_offset + self.twin._dadr
        n = qi.size
        proprio = np.asarray(obs["proprio"], dtype=np.float64)
        clean = np.concatenate([phys[qi], phys[vi]]).astype(np.float32).astype(np.float64)
        delta = proprio - clean
        phys[qi] += delta[:n]
        phys[vi] += delta[n:]
        return state

    def act(self, obs: Mapping[str, np.ndarray], env: RandomizedEnv) -> np.ndarray:
        before = self.ctrl.last_result
        state = self._estimate(obs, env)
        action = self.ctrl.act(self.dyn.objective(state))
        self._note_plan(self.ctrl, before)
        if self.replanned and self.ctrl.last_result is not None:
            self._plan_state = state
            self._plan = self.ctrl.last_result.actions.detach().double().numpy()
        return action.numpy().astype(np.float64)

    def predict(
        self, obs: Mapping[str, np.ndarray], env: RandomizedEnv, actions: np.ndarray
    ) -> dict[str, np.ndarray]:
        r = self.dyn.rollout(
            self._estimate(obs, env), torch.as_tensor(actions, dtype=torch.float64)
        )
        return {
            "reward": r.get("rewards").double().numpy(),
            "distance": r.extras["distance"].double().numpy(),
        }

    def imagined_frame(self, size: tuple[int, int], camera: str | None) -> np.ndarray | None:
        if self._plan is None or self._plan_state is None:
            return None
        self.twin.set_state(self._plan_state)
        for a in self._plan:
            self.twin.step(a)
        return np.asarray(self.twin.render(camera, size))

    def close(self) -> None:
        self.dyn.close()
        self.twin.close()


# -- learned checkpoints ---------------------------------------------------------------------------
@register_policy("checkpoint")
class CheckpointPolicy(Policy):
    """A trained model with its training run's planner and options (overridable)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        from wm_planning.training import Agent, load_checkpoint, make_planner

        assert cfg.checkpoint is not None
        ck = load_checkpoint(cfg.checkpoint)
        train = ck.config
        self.model = ck.build_model(cfg.device)
        self.env_name = cfg.env or str(train.get("env"))
        self.pixels = bool(train.get("pixels", self.model.pixels))
        self.image_size = int(train.get("image_size", 64))
        ar = train.get("action_repeat")
        self.action_repeat = None if ar is None else int(ar)
        self.trained_steps = int(ck.step)
        from wm_planning.training import make_env

        probe = make_env(self.env_name, False, self.image_size, self.action_repeat)  # action box
        low, high = probe.spec.action_low, probe.spec.action_high
        probe.close()
        opts = None if cfg.planner_options is None else dict(cfg.planner_options)
        self.planner_name, options = ck.planner(cfg.planner, opts)
        planner = make_planner(self.model, low, high, self.planner_name, options)
        self.agent = Agent(
            self.model,
            planner,
            generator=torch.Generator(cfg.device),
            num_prior=int(train.get("num_prior", 0) if cfg.num_prior is None else cfg.num_prior),
            replan_every=int(
                train.get("replan_every", 1) if cfg.replan_every is None else cfg.replan_every
            ),
        )
        # the registered family name (the train config's `model` is the whole model group)
        name = getattr(self.model, "name", "") or type(self.model).__name__
        self.label = cfg.label or f"{Path(cfg.checkpoint).parent.name}:{name}/{self.planner_name}"

    def reset(self, env: RandomizedEnv, seed: int) -> None:
        self.agent.reset()
        self.agent.generator.manual_seed(seed)

    def act(self, obs: Mapping[str, np.ndarray], env: RandomizedEnv) -> np.ndarray:
        before = self.agent.controller.last_result
        action = self.agent.act(obs)
        self._note_plan(self.agent.controller, before)
        return np.asarray(action, dtype=np.float64)

    def predict(
        self, obs: Mapping[str, np.ndarray], env: RandomizedEnv, actions: np.ndarray
    ) -> dict[str, np.ndarray]:
        with torch.no_grad():
            state = self.model.observe(None, None, obs)
            a = torch.as_tensor(actions, dtype=torch.float32, device=self.model.device)
            r = self.model.rollout(state, a)
        out: dict[str, np.ndarray] = {}
        if r.rewards is not None:
            out["reward"] = r.rewards.double().cpu().numpy()
        return out

    def imagined_frame(self, size: tuple[int, int], camera: str | None) -> np.ndarray | None:
        res, state = self.agent.controller.last_result, self.agent.state
        if res is None or state is None:
            return None
        with torch.no_grad():
            r = self.model.rollout(state, res.actions.detach()[None].to(self.model.device))
        if r.frames is None:
            return None  # the model predicts no images (state-based or latent-only)
        img = (r.frames[0, -1].clamp(0, 1) * 255).byte().permute(1, 2, 0).cpu().numpy()
        return _resize_nearest(img, size)


def _resize_nearest(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``h×w×3`` → ``H×W×3`` by nearest neighbour (no OpenCV here)."""
    rows = np.arange(size[0]) * img.shape[0] // size[0]
    cols = np.arange(size[1]) * img.shape[1] // size[1]
    return img[rows][:, cols]


def make_eval_env(
    env_name: str,
    randomization: RandomizationConfig,
    pixels: bool = False,
    image_size: int = 64,
    action_repeat: int | None = None,
) -> RandomizedEnv:
    """The "real" env of an evaluation: episode ``i``'s start, goal and physics sample are those
    of ``reset(seed + i)`` (the ROS path's arm node and client reset the same way)."""
    from wm_planning.training import make_env

    return RandomizedEnv(make_env(env_name, pixels, image_size, action_repeat), randomization)


def make_real_env(policy: Policy, randomization: RandomizationConfig) -> RandomizedEnv:
    """The "real" env the policy acts in: its env, randomized by ``randomization``."""
    return make_eval_env(
        policy.env_name, randomization, policy.pixels, policy.image_size, policy.action_repeat
    )

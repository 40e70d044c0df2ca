"""``wm-plan demo``: steer a simulated arm with MPPI on exact MuJoCo dynamics and film it;
``checkpoint=PATH`` plans with a trained world model instead (its env, planner and options).

Shared episode runner :func:`run_episode` (also used by ``wm-plan solve``): builds the arm env
from the composed ``robot``/``task`` configs, plans each step with the configured planner on
:class:`~wm_planning.models.mujoco_dynamics.MujocoDynamics`, and records success, final distance
and per-plan wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from wm_planning.cli import command
from wm_planning.config import compose


@dataclass
class EpisodeResult:
    seed: int
    success: bool  # task threshold met at the last step
    ever_success: bool  # met at any step
    final_distance: float
    initial_distance: float
    total_cost: float
    steps: int
    plan_times_s: list[float] = field(default_factory=list)
    video: Path | None = None


def make_env(cfg: DictConfig, pixels: bool = False) -> Any:
    import robots
    from wm_planning.envs.arm import ArmEnv, TaskConfig

    task = OmegaConf.to_container(cfg.task, resolve=True)
    assert isinstance(task, dict)
    return ArmEnv(
        robots.get(str(cfg.robot.name)),
        TaskConfig(**{str(k): v for k, v in task.items()}),
        pixels=pixels,
    )


def _drive(
    cfg: DictConfig,
    env: Any,
    obs: Any,
    seed: int,
    act: Callable[[Any], tuple[np.ndarray, float | None]],
    video_path: Path | None,
    progress: bool,
) -> EpisodeResult:
    """The closed loop both demos share: ``act(obs) -> (action, plan seconds or None)`` each step,
    until the episode ends (or succeeds, with ``stop_on_success``); films it to ``video_path``."""
    from tqdm import tqdm

    steps = int(cfg.steps) if cfg.get("steps") is not None else env.spec.episode_length
    d0, _ = env.evaluate()
    size = (int(cfg.video.height), int(cfg.video.width))
    camera = cfg.video.get("camera")
    # imageio wants a plain list of H×W×3 uint8 arrays
    frames: list[Any] = [env.render(camera, size)] if video_path is not None else []
    times: list[float] = []
    total, ever, info = 0.0, False, {"success": False, "distance": d0}
    bar = tqdm(range(steps), desc=f"{env.spec.name} seed {seed}", disable=not progress, leave=False)
    for _ in bar:
        action, plan_s = act(obs)
        if plan_s is not None:
            times.append(plan_s)
        obs, reward, _, truncated, info = env.step(action)
        total -= reward
        ever |= bool(info["success"])
        bar.set_postfix(dist=f"{info['distance']:.3f}")
        if video_path is not None:
            frames.append(env.render(camera, size))
        if truncated or (cfg.get("stop_on_success", False) and info["success"]):
            break
    if video_path is not None:
        import imageio.v2 as imageio

        video_path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(
            video_path, frames, fps=max(1, round(1 / env.spec.control_dt)), macro_block_size=8
        )
    return EpisodeResult(
        seed=seed,
        success=bool(info["success"]),
        ever_success=ever,
        final_distance=float(info["distance"]),
        initial_distance=float(d0),
        total_cost=total,
        steps=len(times),
        plan_times_s=times,
        video=video_path,
    )


def run_episode(
    cfg: DictConfig, seed: int, *, video_path: Path | None = None, progress: bool = True
) -> EpisodeResult:
    """One closed-loop episode of ``cfg`` (composed ``demo``/``solve`` config) from ``seed``."""
    from wm_planning import planners
    from wm_planning.control import Controller
    from wm_planning.models.mujoco_dynamics import MujocoDynamics

    env = make_env(cfg)
    obs = env.reset(seed)
    dyn = MujocoDynamics(env, nthread=int(cfg.nthread))
    planner_cfg = OmegaConf.to_container(cfg.planner, resolve=True)
    assert isinstance(planner_cfg, dict)
    planner = planners.from_config(
        {str(k): v for k, v in planner_cfg.items()},
        horizon=int(cfg.horizon),
        action_low=env.spec.action_low,
        action_high=env.spec.action_high,
    )
    ctrl = Controller(
        planner, generator=torch.Generator().manual_seed(seed), replan_every=int(cfg.replan_every)
    )

    def act(_: Any) -> tuple[np.ndarray, float | None]:
        replanning = ctrl.queue.shape[0] == 0
        action = ctrl.act(dyn.objective(env.get_state()))
        return action.numpy(), ctrl.plan_time_s if replanning else None

    try:
        r = _drive(cfg, env, obs, seed, act, video_path, progress)
    finally:
        env.close()
        dyn.close()
    if int(cfg.replan_every) != 1:  # steps counts env steps, not plans
        r.steps = int(cfg.steps) if cfg.get("steps") is not None else env.spec.episode_length
    return r


def run_checkpoint_episode(
    cfg: DictConfig, seed: int, *, video_path: Path | None = None, progress: bool = True
) -> tuple[EpisodeResult, str]:
    """One closed-loop episode of the trained model ``cfg.checkpoint`` in its own (nominal) env,
    planning as deployed (:class:`~wm_planning.eval.policies.CheckpointPolicy`); returns the
    result and the env's name."""
    from wm_planning.envs.randomization import RandomizationConfig
    from wm_planning.eval.policies import PolicyConfig, make_policy, make_real_env

    policy = make_policy(PolicyConfig(policy="checkpoint", checkpoint=str(cfg.checkpoint)))
    env = make_real_env(policy, RandomizationConfig())
    policy.reset(env, seed)
    obs = env.reset(seed=seed)

    def act(o: Any) -> tuple[np.ndarray, float | None]:
        action = policy.act(o, env)
        return action, policy.plan_time_s if policy.replanned else None

    try:
        return _drive(cfg, env, obs, seed, act, video_path, progress), policy.env_name
    finally:
        env.close()
        policy.close()


def plan_time_summary(times: list[float]) -> str:
    ms = np.asarray(times) * 1e3
    return f"median {np.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms per plan ({len(ms)} plans)"


def _help(name: str) -> str:
    return (
        f"usage: wm-plan {name} [key=value ...]   (Hydra overrides of configs/{name}.yaml)\n"
        f"e.g. robot=panda task=reach seed=3 planner.num_samples=256 horizon=15"
    )


@command("demo", help="MPPI on exact MuJoCo dynamics steers an arm to a target; writes an MP4")
def demo(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(_help("demo"))
        return 0
    cfg = compose("demo", argv)
    seed = int(cfg.seed)
    out_dir = Path(str(cfg.video.dir))
    if not out_dir.is_absolute():
        out_dir = Path.cwd() / out_dir
    video = (
        (out_dir / f"{cfg.robot.name}-{cfg.task.task}-seed{seed}.mp4")
        if cfg.video.enabled
        else None
    )
    start = time.perf_counter()
    if cfg.get("checkpoint"):
        if video is not None:
            video = out_dir / f"{Path(str(cfg.checkpoint)).stem}-seed{seed}.mp4"
        r, name = run_checkpoint_episode(cfg, seed, video_path=video)
        what, extra = f"{name} ({cfg.checkpoint})", ""
    else:
        r = run_episode(cfg, seed, video_path=video)
        what = f"{cfg.robot.name}-{cfg.task.task}"
        extra = f" (threshold {cfg.task.success_threshold})"
    wall = time.perf_counter() - start
    print(
        f"{what} seed {seed}: success={r.success}{extra}, distance {r.initial_distance:.3f} -> "
        f"{r.final_distance:.3f} in {r.steps} steps, {wall:.1f} s wall"
    )
    print(f"plan time: {plan_time_summary(r.plan_times_s)}")
    if r.video is not None:
        print(f"video: {r.video}")
    return 0 if r.success else 1


__all__ = [
    "EpisodeResult",
    "make_env",
    "plan_time_summary",
    "run_checkpoint_episode",
    "run_episode",
]

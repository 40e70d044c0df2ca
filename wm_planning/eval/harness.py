"""Closed-loop evaluation episodes of one policy in one (randomized) env.

:func:`evaluate` runs ``episodes`` episodes (episode ``i`` from seed ``seed + i``: the same
seeds give the same perturbations, targets and planner noise, hence the same table) and returns
one :class:`EpisodeRecord` per episode. Before each episode, the policy's open-loop prediction
from the initial state for ``prediction.sequences`` random action sequences is compared with
what the real (randomized) env does with them: the model's prediction error on that domain,
recorded next to the episode's control result.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wm_planning.envs.randomization import RandomizationConfig, RandomizedEnv

from .policies import Policy, make_real_env


@dataclass(frozen=True)
class PredictionConfig:
    """Open-loop prediction check: ``sequences`` uniform random action sequences of
    ``horizon`` steps from each episode's initial state (0 sequences: off)."""

    sequences: int = 4
    horizon: int = 12

    def __post_init__(self) -> None:
        if self.sequences < 0 or self.horizon < 1:
            raise ValueError(f"need sequences >= 0 and horizon >= 1, got {self}")


@dataclass(frozen=True)
class VideoConfig:
    """MP4s (camera | goal | imagined) of the episodes listed in ``episodes`` (indices)."""

    episodes: tuple[int, ...] = ()
    height: int = 160
    width: int = 160
    camera: str | None = None
    fps: int | None = None  # None: real time (1 / control_dt)

    def __post_init__(self) -> None:
        object.__setattr__(self, "episodes", tuple(int(e) for e in self.episodes))
        if self.height < 16 or self.width < 16 or self.height % 8 or self.width % 8:
            raise ValueError(f"video height/width must be multiples of 8 >= 16, got {self}")


@dataclass(frozen=True)
class HarnessConfig:
    episodes: int = 10
    seed: int = 1_000_000
    steps: int | None = None  # None: the env's episode length
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    randomization_label: str = "nominal"
    prediction: PredictionConfig = field(default_factory=PredictionConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.seed < 0:
            raise ValueError(f"need episodes >= 1 and seed >= 0, got {self.episodes}, {self.seed}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


@dataclass(frozen=True)
class EpisodeRecord:
    """One closed-loop episode. ``success``: the task threshold is met at the last step.
    ``clamped``: steps whose planned action lay outside the action box before clamping.
    ``deadline_misses``: plans slower than the control period (in-process path).
    ``pred_*``: mean absolute open-loop prediction error over sequences × steps (NaN when the
    model does not predict that quantity). ``path``: ``inproc`` or ``ros`` (episodes through the
    arm and planner nodes; docs/evaluation.md says how their columns are measured);
    ``latency_ms_*``: the planner node's input-to-command latency (NaN in-process)."""

    policy: str
    env: str
    planner: str
    randomization: str
    episode: int
    seed: int
    success: bool
    ever_success: bool
    ret: float
    final_distance: float
    initial_distance: float
    steps: int
    plans: int
    plan_ms_mean: float
    plan_ms_max: float
    deadline_misses: int
    clamped: int
    pred_reward_err: float
    pred_distance_err: float
    path: str = "inproc"
    latency_ms_p50: float = float("nan")
    latency_ms_p99: float = float("nan")
    knobs: Mapping[str, float] = field(default_factory=dict)

    #: columns that depend on wall-clock time (left out of determinism comparisons)
    TIMING = ("plan_ms_mean", "plan_ms_max", "deadline_misses", "latency_ms_p50", "latency_ms_p99")

    def row(self) -> dict[str, Any]:
        """Flat dict: fields, then ``knob.<name>`` for every randomization knob."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "knobs"}
        d.update({f"knob.{k}": v for k, v in self.knobs.items()})
        return d


def prediction_error(
    policy: Policy,
    env: RandomizedEnv,
    obs: Mapping[str, np.ndarray],
    cfg: PredictionConfig,
    seed: int,
) -> tuple[float, float]:
    """``(reward error, distance error)``: mean ``|predicted - real|`` over ``K×H`` when the
    policy's model predicts from the current state vs stepping ``env`` (restored afterwards)."""
    if cfg.sequences == 0:
        return float("nan"), float("nan")
    low, high = np.asarray(env.spec.action_low), np.asarray(env.spec.action_high)
    rng = np.random.default_rng([seed, 0x9E37])
    actions = rng.uniform(low, high, size=(cfg.sequences, cfg.horizon, low.size))
    pred = policy.predict(obs, env, actions)
    saved = env.get_state()
    real = {"reward": np.empty(actions.shape[:2]), "distance": np.empty(actions.shape[:2])}
    for k in range(cfg.sequences):
        env.set_state(saved)
        for t in range(cfg.horizon):
            _, r, _, _, info = env.step(actions[k, t])
            real["reward"][k, t] = r
            real["distance"][k, t] = info.get("distance", np.nan)
    env.set_state(saved)
    err = {
        key: float(np.mean(np.abs(pred[key] - real[key]))) if key in pred else float("nan")
        for key in real
    }
    return err["reward"], err["distance"]


def run_episode(
    policy: Policy,
    env: RandomizedEnv,
    cfg: HarnessConfig,
    episode: int,
    *,
    video_path: Path | None = None,
) -> EpisodeRecord:
    """Episode ``episode`` (seed ``cfg.seed + episode``) of ``policy`` in ``env``."""
    from tqdm import tqdm

    seed = cfg.seed + episode
    obs = env.reset(seed)
    policy.reset(env, seed)
    try:
        d0 = float(env.env.evaluate()[0])
    except NotImplementedError:  # tasks without a goal distance (most DMC tasks)
        d0 = float("nan")
    pred_r, pred_d = prediction_error(policy, env, obs, cfg.prediction, seed)
    steps = cfg.steps or env.spec.episode_length
    size = (cfg.video.height, cfg.video.width)
    frames: list[np.ndarray] = []
    goal = env.goal_image(cfg.video.camera, size) if video_path is not None else None
    times: list[float] = []
    ret, clamped, ever = 0.0, 0, False
    info: dict[str, Any] = {"success": False, "distance": d0}
    n = 0
    desc = f"{policy.label} {env.spec.name} ep {episode}"
    for _ in tqdm(range(steps), desc=desc, leave=False, disable=not cfg.progress):
        action = policy.act(obs, env)
        if policy.replanned and policy.plan_time_s is not None:
            times.append(policy.plan_time_s)
        clamped += int(policy.raw_out_of_box)
        if goal is not None:
            imagined = policy.imagined_frame(size, cfg.video.camera)
            panels = [env.render(cfg.video.camera, size), goal]
            frames.append(
                np.concatenate([*panels, *([imagined] if imagined is not None else [])], 1)
            )
        obs, reward, terminated, truncated, info = env.step(action)
        ret += float(reward)
        ever |= bool(info["success"])
        n += 1
        if terminated or truncated:
            break
    if video_path is not None:
        from .video import write_mp4

        write_mp4(video_path, frames, cfg.video.fps or max(1, round(1 / env.spec.control_dt)))
    ms = np.asarray(times) * 1e3
    return EpisodeRecord(
        policy=policy.label,
        env=env.spec.name,
        planner=policy.planner_name,
        randomization=cfg.randomization_label,
        episode=episode,
        seed=seed,
        success=bool(info["success"]),
        ever_success=ever,
        ret=ret,
        final_distance=float(info.get("distance", np.nan)),
        initial_distance=d0,
        steps=n,
        plans=len(times),
        plan_ms_mean=float(ms.mean()) if ms.size else float("nan"),
        plan_ms_max=float(ms.max()) if ms.size else float("nan"),
        deadline_misses=int(np.sum(ms > 1e3 * env.spec.control_dt)),
        clamped=clamped,
        pred_reward_err=pred_r,
        pred_distance_err=pred_d,
        knobs=dataclasses.asdict(cfg.randomization),
    )


def evaluate(
    policy: Policy, cfg: HarnessConfig, out_dir: Path | None = None
) -> list[EpisodeRecord]:
    """``cfg.episodes`` episodes of ``policy`` in its env randomized by ``cfg.randomization``;
    videos of ``cfg.video.episodes`` go to ``out_dir``."""
    env = make_real_env(policy, cfg.randomization)
    records = []
    start = time.perf_counter()
    try:
        for i in range(cfg.episodes):
            video = (
                out_dir / f"episode{i:03d}-seed{cfg.seed + i}.mp4"
                if out_dir is not None and i in cfg.video.episodes
                else None
            )
            r = run_episode(policy, env, cfg, i, video_path=video)
            records.append(r)
            print(
                f"  episode {i:3d} (seed {r.seed}): return {r.ret:9.2f} success={r.success} "
                f"final distance {r.final_distance:.4f}",
                flush=True,
            )
    finally:
        env.close()
    print(f"  {len(records)} episodes in {time.perf_counter() - start:.1f} s", flush=True)
    return records

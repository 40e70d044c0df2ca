"""``wm-plan collect``: roll a policy in a (randomized) env and write an episode dataset.

    wm-plan collect env=dmc-reacher-easy policy=random episodes=10 out=data/reacher \\
        pixels=true image_size=64 randomization=nominal

Composes ``configs/collect.yaml`` (Hydra overrides; ``randomization=<preset>`` or single knobs
such as ``randomization.mass=0.3``). Env constructor presets come from
``configs/task/<env with - as _>.yaml`` when that file names the env in an ``env:`` key.
(``env`` is the registered env name, e.g. ``panda-reach`` or ``dmc-cheetah-run``; ``task`` is
left to the Hydra group of the same name.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wm_planning.cli import command


@dataclass(frozen=True)
class CollectConfig:
    env: str
    policy: str = "random"
    policy_options: dict[str, Any] = field(default_factory=dict)
    episodes: int = 10
    out: str = "data/out"
    overwrite: bool = False
    seed: int = 0
    pixels: bool = False
    image_size: int = 64
    action_repeat: int | None = None
    randomization: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {self.image_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.action_repeat is not None and self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
        if not self.out:
            raise ValueError("out (dataset directory) must be set")


def task_preset(env: str) -> dict[str, Any]:
    """Env kwargs from ``configs/task/<env, - as _>.yaml`` if it declares ``env: <env>``."""
    from wm_planning.config import config_dir, load_group

    stem = env.replace("-", "_")
    if not (config_dir() / "task" / f"{stem}.yaml").is_file():
        return {}
    preset = load_group("task", stem)
    if preset.get("env") != env:
        return {}
    return {k: v for k, v in preset.items() if k != "env"}


def make_env(cfg: CollectConfig) -> Any:
    """The (randomized) env described by ``cfg``."""
    from wm_planning import envs
    from wm_planning.envs.randomization import RandomizationConfig, RandomizedEnv

    kwargs = task_preset(cfg.env)
    kwargs.update(pixels=cfg.pixels, image_size=(cfg.image_size, cfg.image_size))
    if cfg.action_repeat is not None:
        kwargs["action_repeat"] = cfg.action_repeat
    env = envs.make(cfg.env, **kwargs)
    if not isinstance(env, envs.MujocoEnv):
        raise TypeError(f"{cfg.env} is not a MuJoCo env; randomization needs one")
    return RandomizedEnv(env, RandomizationConfig.from_dict(cfg.randomization))


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, float]:
    """Run the collection; returns summary numbers (also printed by the command)."""
    from tqdm import tqdm

    from wm_planning.data import DatasetWriter, EpisodeRecorder, policies

    env = make_env(cfg)
    try:
        policy = policies.make(cfg.policy, env, **dict(cfg.policy_options))
        writer = DatasetWriter(
            Path(cfg.out), cfg.env, env.spec, config=_plain(cfg), overwrite=cfg.overwrite
        )
        steps, successes, t0 = 0, 0, time.perf_counter()
        bar = tqdm(total=cfg.episodes * env.spec.episode_length, unit="step", disable=not progress)
        for i in range(cfg.episodes):
            seed = cfg.seed + i
            obs = env.reset(seed=seed)
            policy.reset(seed)
            rec = EpisodeRecorder(obs)
            done = False
            while not done:
                a = policy.act(obs)
                obs, r, te, tr, info = env.step(a)
                done = rec.add(a, obs, r, te, tr, info)
                bar.update(1)
            ep = rec.episode(seed, physics=env.physics_params())
            writer.add(ep)
            steps += len(ep)
            successes += bool(ep.success[-1])
        bar.close()
        elapsed = time.perf_counter() - t0
    finally:
        env.close()
    return {
        "episodes": cfg.episodes,
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "success_rate": successes / cfg.episodes,
    }


def _plain(cfg: CollectConfig) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(cfg)


def load_config(argv: list[str]) -> CollectConfig:
    from omegaconf import OmegaConf

    from wm_planning.config import compose

    raw = OmegaConf.to_container(compose("collect", argv), resolve=True)
    assert isinstance(raw, dict)
    known = set(CollectConfig.__dataclass_fields__)
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ValueError(f"unknown collect options {unknown}; known: {sorted(known)}")
    return CollectConfig(**{str(k): v for k, v in raw.items()})


@command("collect", help="roll a policy in a (randomized) env and write an episode dataset")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    cfg = load_config(argv)
    s = collect(cfg)
    px = f" with {cfg.image_size}x{cfg.image_size} pixels" if cfg.pixels else " (no pixels)"
    print(
        f"wrote {s['episodes']} episodes / {s['steps']} steps to {cfg.out} in {s['seconds']:.1f} s:"
        f" {s['steps_per_s']:.1f} env steps/s{px}; final-step success rate {s['success_rate']:.2f}"
    )
    return 0

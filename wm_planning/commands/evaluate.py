"""``wm-plan eval``: closed-loop episodes with a trained checkpoint.

    wm-plan eval checkpoint=runs/planar-reach-tdmpc2-s0/checkpoint.pt episodes=50

Composes ``configs/eval.yaml``. The env, planner and planning options default to the training
run's (stored in the checkpoint). Prints per-episode return/success and a summary: success rate
(success at the final step), mean return and plan time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wm_planning.cli import command


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str
    episodes: int = 10
    seed: int = 1_000_000
    env: str | None = None
    planner: str | None = None
    planner_options: dict[str, Any] | None = None
    num_prior: int | None = None
    replan_every: int | None = None
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.seed < 0:
            raise ValueError(f"need episodes >= 1 and seed >= 0, got {self.episodes}, {self.seed}")


def evaluate(cfg: EvalConfig) -> dict[str, float]:
    from tqdm import tqdm

    from wm_planning.training import Agent, load_checkpoint, make_env, make_planner, run_episode

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    ck = load_checkpoint(cfg.checkpoint)
    train = ck.config
    model = ck.build_model(cfg.device)
    env = make_env(
        cfg.env or str(train.get("env")),
        bool(train.get("pixels", model.pixels)),
        int(train.get("image_size", 64)),
    )
    try:
        options = (
            train.get("planner_options") or {}
            if cfg.planner_options is None
            else cfg.planner_options
        )
        planner = make_planner(
            model,
            env.spec.action_low,
            env.spec.action_high,
            cfg.planner or train.get("planner"),
            options,
        )
        agent = Agent(
            model,
            planner,
            generator=torch.Generator(cfg.device).manual_seed(cfg.seed),
            num_prior=int(train.get("num_prior", 0) if cfg.num_prior is None else cfg.num_prior),
            replan_every=int(
                train.get("replan_every", 1) if cfg.replan_every is None else cfg.replan_every
            ),
        )
        rets, oks, times = [], [], []
        start = time.perf_counter()
        for i in tqdm(range(cfg.episodes), disable=not cfg.progress, desc="eval", leave=False):
            agent.reset()
            s = run_episode(env, cfg.seed + i, agent.act, agent=agent)
            rets.append(s.ret)
            oks.append(s.success)
            times += s.plan_times_s
            print(
                f"  episode {i:3d} (seed {cfg.seed + i}): return {s.ret:9.2f} success={s.success}",
                flush=True,
            )
    finally:
        env.close()
    return {
        "episodes": cfg.episodes,
        "success_rate": float(np.mean(oks)),
        "return_mean": float(np.mean(rets)),
        "return_std": float(np.std(rets)),
        "plan_ms_median": 1000 * float(np.median(times)) if times else float("nan"),
        "plan_ms_p95": 1000 * float(np.percentile(times, 95)) if times else float("nan"),
        "wall_s": time.perf_counter() - start,
        "env_steps": float(ck.step),
    }


@command("eval", help="closed-loop episodes with a trained checkpoint: success, return, plan time")
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    from omegaconf import OmegaConf

    from wm_planning.config import compose

    raw = OmegaConf.to_container(compose("eval", argv), resolve=True)
    assert isinstance(raw, dict)
    cfg = EvalConfig(**{str(k): v for k, v in raw.items()})
    r = evaluate(cfg)
    print(
        f"{cfg.checkpoint} (trained {int(r['env_steps'])} steps): success "
        f"{r['success_rate'] * 100:.0f}% over {cfg.episodes} episodes, return "
        f"{r['return_mean']:.2f} ± {r['return_std']:.2f}, plan time median "
        f"{r['plan_ms_median']:.1f} ms (p95 {r['plan_ms_p95']:.1f}), {r['wall_s']:.0f} s wall"
    )
    return 0

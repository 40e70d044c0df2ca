"""``wm-plan solve``: closed-loop MPPI on exact MuJoCo dynamics over N seeds."""

from __future__ import annotations

import time

import numpy as np

from wm_planning.cli import command
from wm_planning.config import compose

from .demo import plan_time_summary, run_episode


@command(
    "solve", help="MPPI on exact MuJoCo dynamics over N seeds: success rate, distance, plan time"
)
def solve(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(
            "usage: wm-plan solve [key=value ...]  (Hydra overrides of configs/solve.yaml)\n"
            "e.g. robot=panda task=reach seeds=20"
        )
        return 0
    cfg = compose("solve", argv)
    n = int(cfg.seeds)
    if n < 1:
        raise SystemExit(f"seeds must be >= 1, got {n}")
    start = time.perf_counter()
    results = []
    for seed in range(n):
        r = run_episode(cfg, seed, progress=True)
        results.append(r)
        print(
            f"  seed {seed:3d}: success={r.success!s:5} final distance {r.final_distance:.4f} "
            f"(start {r.initial_distance:.3f})",
            flush=True,
        )
    wall = time.perf_counter() - start
    ok = sum(r.success for r in results)
    times = [t for r in results for t in r.plan_times_s]
    print(
        f"{cfg.robot.name}-{cfg.task.task}: success {ok}/{n} ({100 * ok / n:.0f}%), "
        f"ever-success {sum(r.ever_success for r in results)}/{n}, mean final distance "
        f"{np.mean([r.final_distance for r in results]):.4f} "
        f"(threshold {cfg.task.success_threshold}), {wall:.0f} s wall"
    )
    print(f"plan time: {plan_time_summary(times)}")
    return 0

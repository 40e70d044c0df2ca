"""Plan time per control step of trained checkpoints (``wm-plan bench checkpoints``).

Each checkpoint plans exactly as it does when deployed: the training run's planner, options,
policy-prior trajectories and receding horizon (:class:`~wm_planning.eval.policies.CheckpointPolicy`
through the shared :class:`~wm_planning.training.agent.Agent`), closed-loop in its own nominal env
from a fixed seed. A *control step* is one ``act``: encode the observation, draw the prior, run the
planner (when the controller replans) and return the action, so this is the compute a robot waits
for each period. The table sets it against the env's control period.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class CheckpointRow:
    checkpoint: str
    model: str
    params: int
    size_mb: float
    env: str
    planner: str
    budget: str  # samples × iterations, horizon
    threads: int
    steps: int  # timed control steps
    median_ms: float
    p90_ms: float
    max_ms: float
    period_ms: float  # the env's control period
    over_period: int  # timed steps slower than the control period


def _budget(planner: object) -> str:
    cfg = getattr(planner, "config", None)
    parts = []
    for key in ("num_samples", "population", "iterations", "horizon"):
        v = getattr(cfg, key, None)
        if v is not None:
            parts.append(f"{key.replace('num_', '')}={v}")
    return " ".join(parts)


def bench_checkpoint(
    path: str | Path, steps: int = 50, warmup: int = 5, seed: int = 0
) -> CheckpointRow:
    """Time ``steps`` control steps (after ``warmup`` untimed ones) of ``path`` in its env."""
    from wm_planning.envs.randomization import RandomizationConfig
    from wm_planning.eval.policies import PolicyConfig, make_policy, make_real_env

    policy = make_policy(PolicyConfig(policy="checkpoint", checkpoint=str(path)))
    env = make_real_env(policy, RandomizationConfig())
    times: list[float] = []
    try:
        policy.reset(env, seed)
        obs = env.reset(seed=seed)
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            action = policy.act(obs, env)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                policy.reset(env, seed + i + 1)
                obs = env.reset(seed=seed + i + 1)
        period = float(env.spec.control_dt)
    finally:
        env.close()
        policy.close()
    model = getattr(policy, "model", None)
    ms = np.asarray(times) * 1e3
    return CheckpointRow(
        checkpoint=str(path),
        model=str(getattr(model, "name", "") or type(model).__name__),
        params=int(sum(p.numel() for p in model.parameters())) if model is not None else 0,
        size_mb=Path(path).stat().st_size / 1e6,
        env=policy.env_name,
        planner=policy.planner_name,
        budget=_budget(getattr(getattr(policy, "agent", None), "planner", None)),
        threads=torch.get_num_threads(),
        steps=len(times),
        median_ms=float(statistics.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        max_ms=float(ms.max()),
        period_ms=1e3 * period,
        over_period=int((ms > 1e3 * period).sum()),
    )


def table(rows: list[CheckpointRow]) -> str:
    head = (
        f"{'checkpoint':<40} {'model':<8} {'params':>8} {'MB':>5} {'env':<14} {'planner':<12} "
        f"{'thr':>3} {'median ms':>9} {'p90 ms':>7} {'max ms':>7} {'period ms':>9} {'over':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{Path(r.checkpoint).name:<40} {r.model:<8} {r.params:>8} {r.size_mb:>5.1f} "
            f"{r.env:<14} {r.planner:<12} {r.threads:>3} {r.median_ms:>9.1f} {r.p90_ms:>7.1f} "
            f"{r.max_ms:>7.1f} {r.period_ms:>9.1f} {r.over_period:>5}"
        )
    lines += [f"budget {Path(r.checkpoint).name}: {r.budget}" for r in rows if r.budget]
    return "\n".join(lines)


def to_json(rows: list[CheckpointRow]) -> str:
    return json.dumps([asdict(r) for r in rows])

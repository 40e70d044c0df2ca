"""``wm-plan bench train``: milliseconds per training update of a model family, eager and with
``torch.compile`` (``compile=true`` in ``wm-plan train``), on batches drawn from real episodes.

One row per mode: first update (includes compiling), then the median and p90 of ``repeats``
timed updates, and updates per second. An update is exactly what the trainer does per env step
(loss, backward, per-group gradient clipping, Adam, target-network EMA).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class TrainRow:
    model: str
    env: str
    mode: str
    batch: int
    seq_len: int
    first_s: float
    median_ms: float
    p90_ms: float
    updates_per_s: float
    threads: int


def bench_train(
    model: str, env: str, modes: tuple[str, ...], repeats: int, warmup: int, seed: int = 0
) -> list[TrainRow]:
    import torch

    from wm_planning.config import load_group
    from wm_planning.models.registry import ModelSpec
    from wm_planning.training import ReplayBuffer, make_env
    from wm_planning.training.agent import run_episode
    from wm_planning.training.trainer import TrainConfig, Trainer

    model_cfg = load_group("model", model)
    pixels = str(model_cfg.get("obs", "state")) == "pixels"
    e = make_env(env, pixels, 64)
    rng = np.random.default_rng(seed)
    low, high = np.asarray(e.spec.action_low), np.asarray(e.spec.action_high)
    spec = ModelSpec(dict(e.spec.obs_shapes), e.spec.action_dim, e.spec.episode_length)
    key = "pixels" if pixels else "state"
    buffer = ReplayBuffer([key])
    for i in range(3):  # random-action episodes: real observation statistics and layouts
        stats = run_episode(e, seed + i, lambda _obs: rng.uniform(low, high), keep=True)
        assert stats.episode is not None
        buffer.add(stats.episode)
    e.close()
    rows = []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="wm_bench_train_") as out:
            cfg = TrainConfig(model=dict(model_cfg), env=env, pixels=pixels, out=out, seed=seed,
                              progress=False, tensorboard=False, compile=mode == "compile")  # fmt: skip
            trainer = Trainer(cfg, spec, {})
            trainer.fit_obs_stats(buffer)
            t0 = time.perf_counter()
            trainer.update(trainer.sample(buffer))
            first = time.perf_counter() - t0
            for _ in range(warmup):
                trainer.update(trainer.sample(buffer))
            times = []
            for _ in range(repeats):
                batch = trainer.sample(buffer)
                t0 = time.perf_counter()
                trainer.update(batch)
                times.append((time.perf_counter() - t0) * 1e3)
            trainer.close()
        med = statistics.median(times)
        rows.append(TrainRow(
            model, env, mode, int(cfg.resolved("batch_size")), int(cfg.resolved("seq_len")),
            first, med, float(np.percentile(times, 90)), 1e3 / med, torch.get_num_threads(),
        ))  # fmt: skip
    return rows


def table(rows: list[TrainRow]) -> str:
    head = "| model | env | mode | batch × seq | first update (s) | median ms | p90 ms | updates/s | threads |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.env} | {r.mode} | {r.batch} × {r.seq_len} | {r.first_s:.1f} | "
            f"{r.median_ms:.1f} | {r.p90_ms:.1f} | {r.updates_per_s:.2f} | {r.threads} |"
        )
    if len(rows) == 2 and {r.mode for r in rows} == {"eager", "compile"}:
        eager, comp = sorted(rows, key=lambda r: r.mode != "eager")
        lines.append(f"\ncompile speedup (median): {eager.median_ms / comp.median_ms:.2f}x")
    return "\n".join(lines)


def to_json(rows: list[TrainRow]) -> str:
    out: list[dict[str, Any]] = [asdict(r) for r in rows]
    return json.dumps(out, indent=2)

"""``wm-plan bench planners``: time every planner on the reference configurations."""

from __future__ import annotations

import argparse
import sys

import torch

from wm_planning.cli import command

DEFAULT_PLANNERS = "mppi,cem,icem,pytorch_mppi"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wm-plan bench planners",
        description="Median/p90 ms per plan, rollouts/s, achieved matmul GFLOP/s and share of "
        "this machine's measured matmul peak, for each planner on each reference configuration; "
        "pytorch_mppi on the same dynamics with the speedup of ours (their time / ours).",
    )
    p.add_argument("--configs", default="tdmpc2-5m,tdmpc2-1m,planet", help="comma-separated")
    p.add_argument("--planners", default=DEFAULT_PLANNERS, help="comma-separated")
    p.add_argument("--models", default="fused", help="model implementations: fused,reference")
    p.add_argument("--mode", choices=["eager", "compile", "both"], default="both")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--repeats", type=int, default=10, help="timed plans per row")
    p.add_argument("--warmup", type=int, default=2, help="untimed plans first (+2 when compiled)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--quick", action="store_true", help="tiny config, 2 repeats, small peak")
    p.add_argument(
        "--profile", action="store_true", help="profile one plan per row: matmul share, top ops"
    )
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    return p


@command("bench planners", help="time planners on reference world-model configurations")
def bench_planners(argv: list[str]) -> int:
    from wm_planning import bench

    args = _parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = bench.resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("wm-plan bench: CUDA requested but not available", file=sys.stderr)
        return 2
    configs = args.configs.split(",")
    peak_sizes: tuple[int, ...] = (2048, 3072)
    repeats, warmup, peak_reps = args.repeats, args.warmup, 5
    if args.quick:
        configs = ["tiny"] if args.configs == _parser().get_default("configs") else configs
        repeats, warmup, peak_sizes, peak_reps = 2, 1, (256,), 2
    modes = bench.MODES if args.mode == "both" else (args.mode,)

    def progress(row: bench.Row) -> None:
        print(
            f"  {row.config} {row.planner} {row.model} {row.mode}: {row.median_ms:.1f} ms",
            file=sys.stderr,
        )

    report = bench.run(
        configs,
        args.planners.split(","),
        modes,
        args.models.split(","),
        device,
        repeats=repeats,
        warmup=warmup,
        peak_sizes=peak_sizes,
        peak_reps=peak_reps,
        on_row=progress,
        profile=args.profile,
    )
    print(report.to_json() if args.json else report.table())
    return 0


@command("bench checkpoints", help="plan time per control step of trained checkpoints")
def bench_checkpoints(argv: list[str]) -> int:
    from wm_planning.bench import checkpoints
    from wm_planning.training import CheckpointError

    p = argparse.ArgumentParser(prog="wm-plan bench checkpoints", description=checkpoints.__doc__)
    p.add_argument("paths", nargs="+", help="checkpoints from `wm-plan train` (or stripped)")
    p.add_argument("--steps", type=int, default=50, help="timed control steps per checkpoint")
    p.add_argument("--warmup", type=int, default=5, help="untimed control steps first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = []
    for path in args.paths:
        try:
            rows.append(checkpoints.bench_checkpoint(path, args.steps, args.warmup, args.seed))
        except (CheckpointError, FileNotFoundError) as e:
            print(f"wm-plan bench checkpoints: {e}", file=sys.stderr)
            return 2
    print(checkpoints.to_json(rows) if args.json else checkpoints.table(rows))
    return 0


@command("bench train", help="ms per training update, eager vs torch.compile")
def bench_train(argv: list[str]) -> int:
    from wm_planning.bench import train

    p = argparse.ArgumentParser(prog="wm-plan bench train", description=train.__doc__)
    p.add_argument("--model", default="tdmpc2_1m", help="configs/model/<name>")
    p.add_argument(
        "--env", default="planar-reach", help="registered env (batches from its episodes)"
    )
    p.add_argument("--mode", choices=["eager", "compile", "both"], default="both")
    p.add_argument("--repeats", type=int, default=20, help="timed updates per mode")
    p.add_argument("--warmup", type=int, default=3, help="untimed updates after the first")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of the table")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    modes = ("eager", "compile") if args.mode == "both" else (args.mode,)
    rows = train.bench_train(args.model, args.env, modes, args.repeats, args.warmup)
    print(train.to_json(rows) if args.json else train.table(rows))
    return 0

"""``wm-plan curves`` (learning-curve plots) and ``wm-plan checkpoint-strip`` (ship a
checkpoint without its resume-only state)."""

from __future__ import annotations

import argparse

from wm_planning.cli import command


@command("curves", help="plot learning curves (episodes.csv of training runs) as a PNG")
def curves(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="wm-plan curves", description=__doc__)
    p.add_argument("runs", nargs="+", help="`wm-plan train` run directories")
    p.add_argument("--out", required=True, help="PNG path")
    p.add_argument("--metric", default="return", help="episodes.csv column (return, success)")
    p.add_argument("--window", type=int, default=10, help="moving-average window (episodes)")
    p.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a published score drawn as a dashed line, e.g. 'TD-MPC2 100k=936.9'",
    )
    p.add_argument("--all-episodes", action="store_true", help="include random seed episodes")
    args = p.parse_args(argv)
    refs: dict[str, float] = {}
    for item in args.reference:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            p.error(f"--reference takes NAME=VALUE, got {item!r}")
        refs[name] = float(value)
    from wm_planning.training.curves import plot_curves

    out = plot_curves(
        args.runs,
        args.out,
        metric=args.metric,
        window=args.window,
        references=refs,
        planned_only=not args.all_episodes,
    )
    print(f"wrote {out}")
    return 0


@command(
    "checkpoint-strip",
    help="copy a checkpoint (train or train-visual) without optimizer/RNG state, for shipping",
)
def strip(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="wm-plan checkpoint-strip", description=__doc__)
    p.add_argument("src")
    p.add_argument("dst")
    args = p.parse_args(argv)
    from pathlib import Path

    from wm_planning.training import CheckpointError, strip_checkpoint
    from wm_planning.training.checkpoint import read_checkpoint_file
    from wm_planning.training.visual_checkpoint import VISUAL_FORMAT, strip_visual_checkpoint

    try:
        head = read_checkpoint_file(Path(args.src))
        visual = isinstance(head, dict) and head.get("format") == VISUAL_FORMAT
        out = (strip_visual_checkpoint if visual else strip_checkpoint)(args.src, args.dst)
    except CheckpointError as e:
        print(f"wm-plan checkpoint-strip: {e}")
        return 2
    before, after = Path(args.src).stat().st_size, out.stat().st_size
    print(f"wrote {out}: {after / 1e6:.2f} MB (was {before / 1e6:.2f} MB)")
    return 0

"""Repair the step axis of an online run trained before resumes counted recorded episodes.

Before the fix (``Trainer.count_recorded``), a run resumed from its last checkpoint kept the
episodes it had recorded after that checkpoint in its replay buffer, but its step counter
restarted at the checkpoint's: its ``episodes.csv`` step column (and every curve drawn from it)
undercounts the env steps collected. The episodes themselves are all in the run's
``episodes_NNN`` parts, in order, and row ``episode = i`` of ``episodes.csv`` is the ``i``-th
of them (checked here: its seed is ``seed · 1000003 + i``, as ``train_online`` seeds it).

    python scripts/recount_steps.py runs/reacher-easy-tdmpc2_1m            # report only
    python scripts/recount_steps.py runs/reacher-easy-tdmpc2_1m --write    # rewrite the CSV

``--write`` keeps the old file as ``episodes.csv.orig`` and adds a column ``counted_step`` with
the old value. The old resume also dropped the rows of the episodes it kept; ``--write`` restores
them from the parts' ``meta.json`` (episode, step, return, success, length and whether it was a
random seed episode; the columns only the run knew, such as ``plan_ms``, stay empty) and marks
them ``restored = 1``. Run it while the run is stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml


def recorded(run: Path) -> tuple[list[int], list[dict[str, Any]], int]:
    """Cumulative env steps after each recorded episode and its ``meta.json`` entry, in load
    order, and the env's episode length."""
    total, cum, entries, length = 0, [], [], 0
    for part in sorted(p for p in run.glob("episodes_*") if (p / "meta.json").is_file()):
        meta = json.loads((part / "meta.json").read_text())
        length = int(meta["spec"]["episode_length"])
        for e in meta["episodes"]:
            total += int(e["length"])
            cum.append(total)
            entries.append(e)
    return cum, entries, length


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--write", action="store_true", help="rewrite episodes.csv (keeps .orig)")
    args = ap.parse_args(argv)
    run: Path = args.run
    config = yaml.safe_load((run / "config.yaml").read_text())
    seed = int(config.get("seed", 0))
    cum, entries, length = recorded(run)
    seeds = [int(e["seed"]) for e in entries]
    # as train_online: random actions until seed_steps (default: 5 episodes, at least 1,000)
    seed_steps = config.get("seed_steps")
    seed_steps = max(1000, 5 * length) if seed_steps is None else int(seed_steps)
    with (run / "episodes.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    off = 0
    for r in rows:
        i = int(r["episode"])
        if i >= len(cum):
            print(f"row for episode {i}: not recorded ({len(cum)} episodes)", file=sys.stderr)
            return 1
        if seeds[i] != seed * 1_000_003 + i:
            print(f"episode {i}: recorded seed {seeds[i]} is not this row's", file=sys.stderr)
            return 1
        true, counted = cum[i], int(float(r["step"]))
        if true != counted:
            off += 1
        r["counted_step"], r["step"] = r.get("counted_step") or str(counted), str(true)
    have = {int(r["episode"]) for r in rows}
    missing = [i for i in range(len(cum)) if i not in have and seeds[i] == seed * 1_000_003 + i]
    for i in missing:
        e = entries[i]
        rows.append({
            "episode": str(i), "step": str(cum[i]), "return": str(e["return"]),
            "success": str(int(bool(e["success"]))), "length": str(e["length"]),
            "random": str(int(cum[i] - int(e["length"]) < seed_steps)), "restored": "1",
        })  # fmt: skip
    rows.sort(key=lambda r: int(r["episode"]))
    last = rows[-1] if rows else None
    print(
        f"{run}: {len(rows)} rows, {len(cum)} recorded episodes ({cum[-1] if cum else 0} env "
        f"steps); {off} rows undercounted"
        + (
            f", the last by {int(last['step']) - int(last['counted_step'] or last['step'])}"
            if last
            else ""
        )
        + f"; {len(missing)} recorded episodes had no row"
    )
    if args.write and (off or missing):
        if not (run / "episodes.csv.orig").exists():
            shutil.copy(run / "episodes.csv", run / "episodes.csv.orig")
        for extra in ("counted_step", "restored"):
            if extra not in fields:
                fields.append(extra)
        with (run / "episodes.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(rows)
        print(f"rewrote {run / 'episodes.csv'} (old file: episodes.csv.orig)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

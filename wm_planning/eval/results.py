"""Evaluation results: per-episode files, aggregation with confidence intervals, merging of
several runs (a Hydra multirun's jobs) and comparison of policies on the same episodes.

A run directory holds ``episodes.csv``/``episodes.json`` (one row per episode, see
:class:`~wm_planning.eval.harness.EpisodeRecord`) and ``summary.{json,md}``. A merge over
directories reads every ``episodes.json`` below them and writes ``merged_*`` files (never read
back as inputs), plus the success-versus-strength plots of :mod:`wm_planning.eval.plots`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra.experimental.callback import Callback

from .stats import bootstrap_mean, wilson

Row = dict[str, Any]
PRESET_ORDER = ("nominal", "light", "medium", "strong")


# -- files ----------------------------------------------------------------------------------------
def write_rows(out_dir: Path, rows: Sequence[Row], prefix: str = "") -> None:
    """``<prefix>episodes.csv`` and ``<prefix>episodes.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{prefix}episodes.json").write_text(json.dumps(list(rows), indent=1) + "\n")
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(out_dir / f"{prefix}episodes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def write_summary(out_dir: Path, rows: Sequence[Row], prefix: str = "", title: str = "") -> str:
    """Aggregate ``rows`` into ``<prefix>summary.json`` and ``<prefix>summary.md``; returns the
    markdown table."""
    summary = aggregate(rows)
    (out_dir / f"{prefix}summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    md = (f"# {title}\n\n" if title else "") + markdown_table(summary) + "\n"
    (out_dir / f"{prefix}summary.md").write_text(md)
    return md


def load_rows(dirs: Iterable[Path]) -> list[Row]:
    """Every row of every ``episodes.json`` below ``dirs`` (sorted paths: a stable order)."""
    rows: list[Row] = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("episodes.json"))
        for f in files:
            rows += json.loads(f.read_text())
    return rows


# -- aggregation ----------------------------------------------------------------------------------
def _order(label: str) -> tuple[int, str]:
    return (PRESET_ORDER.index(label) if label in PRESET_ORDER else len(PRESET_ORDER), label)


def group_key(r: Row) -> tuple[str, str, str]:
    return str(r["policy"]), str(r["env"]), str(r["randomization"])


def aggregate(rows: Sequence[Row]) -> list[Row]:
    """One row per (policy, env, randomization): episodes, success rate with its Wilson 95 %
    interval, the gap to the same policy's nominal success, and bootstrap 95 % intervals of the
    mean final distance and return; totals of deadline misses and clamped commands; mean plan
    time and prediction errors."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault(group_key(r), []).append(r)
    out: list[Row] = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], _order(k[2]))):
        g = groups[key]
        n, ok = len(g), sum(bool(r["success"]) for r in g)
        lo, hi = wilson(ok, n)
        col = lambda name, g=g: np.asarray([float(r[name]) for r in g])  # noqa: E731
        dist, dlo, dhi = bootstrap_mean(col("final_distance"))
        ret, rlo, rhi = bootstrap_mean(col("ret"))
        out.append(
            {
                "policy": key[0],
                "env": key[1],
                "randomization": key[2],
                "episodes": n,
                "success_rate": ok / n,
                "success_ci": [lo, hi],
                "final_distance": dist,
                "final_distance_ci": [dlo, dhi],
                "return": ret,
                "return_ci": [rlo, rhi],
                "plan_ms_mean": _nanmean(col("plan_ms_mean")),
                "plan_ms_max": _nanmax(col("plan_ms_max")),
                "deadline_misses": int(col("deadline_misses").sum()),
                "clamped": int(col("clamped").sum()),
                "steps": int(col("steps").sum()),
                "pred_reward_err": _nanmean(col("pred_reward_err")),
                "pred_distance_err": _nanmean(col("pred_distance_err")),
            }
        )
    nominal = {
        (s["policy"], s["env"]): s["success_rate"] for s in out if s["randomization"] == "nominal"
    }
    for s in out:
        base = nominal.get((s["policy"], s["env"]))
        s["success_gap_vs_nominal"] = math.nan if base is None else s["success_rate"] - base
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _nanmax(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.max()) if x.size else math.nan


def _f(x: float, fmt: str) -> str:
    return "–" if x is None or not math.isfinite(x) else format(x, fmt)


def markdown_table(summary: Sequence[Row]) -> str:
    """The aggregated rows as a GitHub markdown table (CIs are 95 %)."""
    head = (
        "| policy | env | randomization | episodes | success [95% CI] | Δ success vs nominal | "
        "final distance [95% CI] | return | plan ms (mean / max) | deadline misses | "
        "clamped | pred. error: distance / reward |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for s in summary:
        lo, hi = s["success_ci"]
        dlo, dhi = s["final_distance_ci"]
        gap = s["success_gap_vs_nominal"]
        lines.append(
            f"| {s['policy']} | {s['env']} | {s['randomization']} | {s['episodes']} | "
            f"{100 * s['success_rate']:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}] | "
            f"{'–' if not math.isfinite(gap) else f'{100 * gap:+.0f} pts'} | "
            f"{_f(s['final_distance'], '.4f')} [{_f(dlo, '.4f')}, {_f(dhi, '.4f')}] | "
            f"{_f(s['return'], '.2f')} | {_f(s['plan_ms_mean'], '.1f')} / "
            f"{_f(s['plan_ms_max'], '.1f')} | {s['deadline_misses']}/{s['steps']} | "
            f"{s['clamped']} | {_f(s['pred_distance_err'], '.2e')} / "
            f"{_f(s['pred_reward_err'], '.2e')} |"
        )
    return "\n".join(lines)


# -- merge and compare ----------------------------------------------------------------------------
def merge(dirs: Sequence[Path], out_dir: Path, plots: bool = True) -> str:
    """Merge every run below ``dirs`` into ``out_dir/merged_*`` (+ ``knob_*.png``,
    ``presets.png``); returns the markdown table."""
    rows = load_rows(dirs)
    if not rows:
        raise FileNotFoundError(f"no episodes.json below {[str(d) for d in dirs]}")
    write_rows(out_dir, rows, prefix="merged_")
    md = write_summary(out_dir, rows, prefix="merged_", title="Merged evaluation")
    if plots:
        from .plots import knob_plots, preset_plot

        knob_plots(rows, out_dir)
        preset_plot(rows, out_dir)
    return md


def compare(dirs: Sequence[Path]) -> tuple[list[Row], str]:
    """Policies of several runs on their common episodes (same env, randomization and seed).
    A policy label found in more than one directory is suffixed with ``@<dir name>``. Returns
    the aggregated rows and a markdown report."""
    labelled: list[Row] = []
    per_dir = [load_rows([d]) for d in dirs]
    seen: dict[str, int] = {}
    for rows in per_dir:
        for p in {r["policy"] for r in rows}:
            seen[p] = seen.get(p, 0) + 1
    for d, rows in zip(dirs, per_dir, strict=True):
        for r in rows:
            label = r["policy"] if seen[r["policy"]] == 1 else f"{r['policy']}@{Path(d).name}"
            labelled.append({**r, "policy": label})
    keys: dict[str, set[tuple[str, str, int]]] = {}
    for r in labelled:
        keys.setdefault(r["policy"], set()).add((r["env"], r["randomization"], int(r["seed"])))
    if not keys:
        raise FileNotFoundError(f"no episodes.json below {[str(d) for d in dirs]}")
    common = set.intersection(*keys.values())
    if not common:
        raise ValueError("the runs share no episode (env, randomization, seed)")
    rows = [r for r in labelled if (r["env"], r["randomization"], int(r["seed"])) in common]
    summary = aggregate(rows)
    md = (
        f"# Comparison on {len(common)} common episodes\n\n"
        f"Runs: {', '.join(str(d) for d in dirs)}\n\n" + markdown_table(summary) + "\n"
    )
    return summary, md


class MergeCallback(Callback):
    """Hydra callback (``hydra.callbacks`` in ``configs/eval.yaml``): merges a multirun's jobs
    into the sweep directory when the multirun ends."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        md = merge([sweep], sweep)
        print(md, flush=True)
        print(f"merged results: {sweep / 'merged_summary.md'}", flush=True)

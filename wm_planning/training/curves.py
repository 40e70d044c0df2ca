"""Learning curves from training runs' ``episodes.csv`` (one row per episode: ``step``,
``return``, ``success``, ...), smoothed and drawn next to published reference scores."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def read_episodes(run_dir: str | Path) -> dict[str, np.ndarray]:
    """Columns of ``<run_dir>/episodes.csv`` as float arrays (a clear error if it is missing);
    empty cells (a column only some rows have, such as ``counted_step``) are ``nan``."""
    path = Path(run_dir) / "episodes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is {run_dir} a `wm-plan train` run directory?)")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no episodes yet")
    return {k: np.array([float(r[k] or "nan") for r in rows]) for k in rows[0]}


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` entries (shorter at the start), same length."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    c = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_curves(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    metric: str = "return",
    window: int = 10,
    references: Mapping[str, float] | None = None,
    planned_only: bool = True,
) -> Path:
    """Draw ``metric`` versus environment steps for each run into a PNG at ``out``.

    planned_only: leave out the seed episodes acted by random actions (``random == 1``).
    references: horizontal lines, e.g. ``{"TD-MPC2 (published, 100k)": 936.9}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for run in runs:
        cols = read_episodes(run)
        if metric not in cols:
            raise KeyError(f"{run}: episodes.csv has no column {metric!r}; has {sorted(cols)}")
        keep = cols["random"] == 0 if planned_only and "random" in cols else slice(None)
        steps, values = cols["step"][keep], cols[metric][keep]
        if len(values) == 0:
            raise ValueError(f"{run}: no planned episodes yet (only random seed episodes)")
        ax.plot(steps, values, alpha=0.25, linewidth=0.8)
        ax.plot(steps, moving_average(values, window), label=Path(run).name)
    for name, value in (references or {}).items():
        ax.axhline(value, linestyle="--", color="gray", linewidth=1)
        ax.annotate(name, (ax.get_xlim()[0], value), fontsize=7, va="bottom")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"episode {metric} (moving average over {window})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

"""Sim-to-real plots (matplotlib, Agg backend): success and final distance versus the strength
of each randomization knob, and versus the presets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .results import PRESET_ORDER, Row, aggregate
from .stats import bootstrap_mean, wilson

#: knob units for axis labels (see wm_planning/envs/randomization.py)
UNITS = {
    "latency": "control steps",
    "encoder_offset": "rad",
    "camera_pos": "m",
    "camera_rot": "deg",
    "camera_fov": "deg",
    "obs_noise": "std",
    "pixel_noise": "0..255 std",
    "action_noise": "fraction of half-range",
    "color": "rgb offset",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def knob_plots(rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """``knob_<name>.png`` for every knob swept on its own: the rows where every other knob is 0
    (nominal rows count as strength 0) and that knob takes at least two values. One line per
    policy and env; success with Wilson 95 % bars, mean final distance with bootstrap bars."""
    knobs = sorted({k[5:] for r in rows for k in r if k.startswith("knob.")})
    paths = []
    for knob in knobs:
        others = [f"knob.{k}" for k in knobs if k != knob]
        sel = [r for r in rows if all(float(r.get(o, 0)) == 0 for o in others)]
        if len({float(r[f"knob.{knob}"]) for r in sel}) < 2:
            continue
        plt = _pyplot()
        fig, (ax_s, ax_d) = plt.subplots(1, 2, figsize=(8, 3.2))
        lines: dict[tuple[str, str], list[Row]] = {}
        for r in sel:
            lines.setdefault((r["policy"], r["env"]), []).append(r)
        for (policy, env), rs in sorted(lines.items()):
            xs = sorted({float(r[f"knob.{knob}"]) for r in rs})
            succ, err_s, dist, err_d = [], [], [], []
            for x in xs:
                g = [r for r in rs if float(r[f"knob.{knob}"]) == x]
                ok = sum(bool(r["success"]) for r in g)
                lo, hi = wilson(ok, len(g))
                p = ok / len(g)
                succ.append(p)
                err_s.append([p - lo, hi - p])
                m, dlo, dhi = bootstrap_mean(np.asarray([r["final_distance"] for r in g]))
                dist.append(m)
                err_d.append([m - dlo, dhi - m])
            label = f"{policy} {env}"
            ax_s.errorbar(
                xs,
                succ,
                yerr=np.clip(np.asarray(err_s).T, 0, None),
                marker="o",
                capsize=3,
                label=label,
            )
            ax_d.errorbar(
                xs,
                dist,
                yerr=np.clip(np.asarray(err_d).T, 0, None),
                marker="o",
                capsize=3,
                label=label,
            )
        unit = UNITS.get(knob, "relative range ±x")
        ax_s.set(xlabel=f"{knob} ({unit})", ylabel="success rate", ylim=(-0.05, 1.05))
        ax_d.set(xlabel=f"{knob} ({unit})", ylabel="final distance (m)")
        ax_s.set_title(f"success vs {knob}", fontsize=10)
        ax_d.set_title(f"final distance vs {knob}", fontsize=10)
        ax_s.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"knob_{knob}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths


def preset_plot(rows: Sequence[Row], out_dir: Path) -> Path | None:
    """``presets.png``: success per randomization preset (nominal/light/medium/strong) for each
    policy and env, with Wilson 95 % bars; ``None`` if fewer than two presets were run."""
    summary = [s for s in aggregate(rows) if s["randomization"] in PRESET_ORDER]
    presets = [p for p in PRESET_ORDER if any(s["randomization"] == p for s in summary)]
    if len(presets) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    series = sorted({(s["policy"], s["env"]) for s in summary})
    width = 0.8 / len(series)
    for i, (policy, env) in enumerate(series):
        ss = {s["randomization"]: s for s in summary if (s["policy"], s["env"]) == (policy, env)}
        xs = [j + i * width for j, p in enumerate(presets) if p in ss]
        ps = [ss[p]["success_rate"] for p in presets if p in ss]
        err = [
            [
                ss[p]["success_rate"] - ss[p]["success_ci"][0],
                ss[p]["success_ci"][1] - ss[p]["success_rate"],
            ]
            for p in presets
            if p in ss
        ]
        ax.bar(
            xs,
            ps,
            width,
            yerr=np.clip(np.asarray(err).T, 0, None),
            capsize=3,
            label=f"{policy} {env}",
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(presets))], presets)
    ax.set(ylabel="success rate", ylim=(0, 1.05), title="success vs randomization preset")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "presets.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

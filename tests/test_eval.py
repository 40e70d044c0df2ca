"""The evaluation harness (`wm-plan eval`, eval-merge, eval-compare) on cheap planar-arm runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wm_planning.cli import main as cli
from wm_planning.eval import EpisodeRecord, compare, load_rows
from wm_planning.eval.stats import bootstrap_mean, wilson

# a few short episodes with a tiny MPPI budget: cheap, and still far from all-success
FAST = [
    "model=mujoco",
    "env=planar-reach",
    "episodes=3",
    "steps=25",
    "planner_options={num_samples:32,iterations:1}",
    "horizon=8",
    "nthread=1",
    "progress=false",
    "prediction.sequences=2",
]


def _eval(out: Path, *extra: str) -> list[dict[str, Any]]:
    assert cli(["eval", *FAST, f"hydra.run.dir={out}", *extra]) == 0
    return json.loads((out / "episodes.json").read_text())


def _untimed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in EpisodeRecord.TIMING} for r in rows]


@pytest.fixture(scope="module")
def nominal_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("nominal")
    _eval(root / "a", "video.episodes=[0]", "video.height=64", "video.width=64")
    _eval(root / "b")
    return root / "a", root / "b"


def test_wilson_and_bootstrap() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0
    assert hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4)
    assert hi == pytest.approx(0.7634, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))
    x = np.random.default_rng(0).normal(1.0, 0.1, size=50)
    m, blo, bhi = bootstrap_mean(x)
    assert blo < m < bhi
    assert m == pytest.approx(x.mean())
    assert bootstrap_mean(x) == (m, blo, bhi)  # seeded: deterministic


def test_same_seeds_same_table(nominal_runs: tuple[Path, Path]) -> None:
    a, b = nominal_runs
    rows_a, rows_b = load_rows([a]), load_rows([b])
    assert len(rows_a) == 3
    assert _untimed(rows_a) == _untimed(rows_b)
    for f in ("episodes.csv", "summary.md", "summary.json", "episode000-seed1000000.mp4"):
        assert (a / f).is_file(), f
    assert (a / "episode000-seed1000000.mp4").stat().st_size > 1000
    assert not (b / "episode000-seed1000000.mp4").exists()  # only the listed episodes
    # the harness measured something: steps, plans, distances
    assert all(r["steps"] == 25 and r["plans"] == 25 for r in rows_a)
    assert all(0 <= float(r["final_distance"]) < float(r["initial_distance"]) for r in rows_a)


def test_nominal_vs_nominal_has_no_gap(nominal_runs: tuple[Path, Path]) -> None:
    summary, md = compare(list(nominal_runs))
    assert len(summary) == 2
    assert "3 common episodes" in md
    s_a, s_b = summary
    assert s_a["success_rate"] == s_b["success_rate"]
    assert s_a["final_distance"] == s_b["final_distance"]
    # the nominal twin predicts the nominal env exactly
    assert s_a["pred_distance_err"] < 1e-9
    assert s_a["pred_reward_err"] < 1e-9


def test_broken_model_shows_a_gap(nominal_runs: tuple[Path, Path], tmp_path: Path) -> None:
    # the twin's servos 5x too weak: the plan expects the arm to lag that it does not
    broken = _eval(tmp_path / "broken", "twin_scale={gain:0.2}")
    good = load_rows([nominal_runs[0]])
    assert [r["seed"] for r in broken] == [r["seed"] for r in good]
    ok_good = sum(bool(r["success"]) for r in good)
    ok_broken = sum(bool(r["success"]) for r in broken)
    dist_good = np.mean([float(r["final_distance"]) for r in good])
    dist_broken = np.mean([float(r["final_distance"]) for r in broken])
    assert ok_broken < ok_good or dist_broken > dist_good
    assert min(float(r["pred_distance_err"]) for r in broken) > 1e-3
    assert broken[0]["policy"] == "mujoco[gainx0.2]/mppi"
    # the comparison lines both policies up on the same seeds
    assert (
        cli(
            [
                "eval-compare",
                str(nominal_runs[0]),
                str(tmp_path / "broken"),
                "--out",
                str(tmp_path / "cmp"),
            ]
        )
        == 0
    )
    assert "mujoco[gainx0.2]/mppi" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_multirun_joblib_two_jobs_merged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep"
    args = ["eval", "-m", *FAST, "episodes=2", "steps=10", "randomization.mass=0,0.5"]
    args += ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    assert cli(args) == 0
    jobs = sorted(p.parent.name for p in sweep.glob("*/episodes.json"))
    assert jobs == ["0", "1"]
    merged = json.loads((sweep / "merged_episodes.json").read_text())
    assert len(merged) == 4
    assert {r["randomization"] for r in merged} == {"nominal", "nominal+mass=0.5"}
    assert "n_jobs: 2" in (sweep / "multirun.yaml").read_text()
    assert (sweep / "knob_mass.png").stat().st_size > 1000
    md = (sweep / "merged_summary.md").read_text()
    assert "nominal+mass=0.5" in md
    assert "[" in md
    # eval-merge over the same dir (the merged_* files are outputs, never inputs)
    capsys.readouterr()
    assert cli(["eval-merge", str(sweep), "--out", str(tmp_path / "m2")]) == 0
    assert len(json.loads((tmp_path / "m2" / "merged_episodes.json").read_text())) == 4


def test_planner_group_override(tmp_path: Path) -> None:
    """`planner=NAME planner.key=v` picks configs/planner/NAME.yaml in eval and train alike; only
    the changed keys become planner options (unchanged ones keep "not set")."""
    from wm_planning.commands.train import load_config
    from wm_planning.config import resolve_planner_choice

    args = [a for a in FAST if not a.startswith("planner_options")]
    pick = ["planner=icem", "planner.population=16", "planner.elites=4", "planner.iterations=1"]
    assert cli(["eval", *args, f"hydra.run.dir={tmp_path}", *pick]) == 0
    rows = json.loads((tmp_path / "episodes.json").read_text())
    assert {r["planner"] for r in rows} == {"icem"}
    cfg, _plain = load_config(["planner=icem", "planner.population=64"])
    assert (cfg.planner, cfg.planner_options) == ("icem", {"population": 64})
    cfg, _ = load_config(["planner=planet_cem", "planner_options={iterations: 3}"])
    assert (cfg.planner, cfg.planner_options) == ("planet_cem", {"iterations": 3})
    cfg, _ = load_config([])
    assert cfg.planner is None
    assert cfg.planner_options is None
    with pytest.raises(ValueError, match="option name"):
        resolve_planner_choice({"planner": {"name": "icem"}}, None)

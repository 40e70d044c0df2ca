"""Replay buffer, the online/offline loops and the train/eval commands on tiny runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from wm_planning.cli import main as cli
from wm_planning.data import Episode
from wm_planning.training import ReplayBuffer, load_checkpoint

FAST = [
    "model=tdmpc2_tiny",
    "env=planar-reach",
    "seed_steps=100",
    "pretrain_updates=5",
    "batch_size=16",
    "planner_options={num_samples: 16, num_elites: 4, iterations: 1}",
    "num_prior=4",
    "progress=false",
    "threads=1",
    "log_every=5",
]


def _episode(t: int, start: float) -> Episode:
    obs = start + np.arange(t + 1, dtype=np.float32)[:, None].repeat(3, 1)
    return Episode(
        obs={"state": obs},
        actions=np.full((t, 2), start, np.float32),
        rewards=start + np.arange(t, dtype=np.float32),
        success=np.zeros(t, bool),
        terminated=np.zeros(t, bool),
        truncated=np.eye(1, t, t - 1, dtype=bool)[0],
        seed=0,
    )


def test_buffer_windows_stay_inside_episodes() -> None:
    buf = ReplayBuffer(["state"], capacity=1000)
    for i in range(30):  # enough to force several storage doublings
        buf.add(_episode(50, 1000.0 * i))
    b = buf.sample(64, 5, torch.Generator().manual_seed(0))
    assert b["obs.state"].shape == (64, 6, 3)
    assert b["action"].shape == (64, 5, 2)
    episode_of = (b["obs.state"][..., 0] // 1000).long()
    assert (episode_of == episode_of[:, :1]).all()  # never crosses an episode boundary
    step = b["obs.state"][..., 0] % 1000
    assert torch.equal(step[:, 1:] - step[:, :-1], torch.ones(64, 5))
    assert torch.equal(b["reward"], b["obs.state"][:, :-1, 0])  # reward t pairs with obs t
    assert buf.num_steps <= 1000  # oldest episodes evicted


def _script(name: str) -> Any:
    """``scripts/<name>.py`` as a module (the scripts are not a package)."""
    import importlib.util

    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resume_counts_episodes_recorded_after_the_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run stopped between checkpoints has recorded episodes its checkpoint does not count.
    They stay in the replay buffer, so the resumed run counts them as collected env steps
    (its step axis is the data's), keeps their episodes.csv rows, and does not collect them
    again."""
    out = tmp_path / "run"
    assert cli(["train", *FAST, "steps=100", f"out={out}", "checkpoint_every=100"]) == 0
    shutil.copy(out / "checkpoint.pt", tmp_path / "at100.pt")
    assert cli(["train", *FAST, "steps=200", f"out={out}", "resume=true"]) == 0
    # as if stopped after recording the episode to 200, before its checkpoint was written
    shutil.copy(tmp_path / "at100.pt", out / "checkpoint.pt")
    assert cli(["train", *FAST, "steps=300", f"out={out}", "resume=true"]) == 0
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck.step == 300
    assert ck.updates == 5 + 100  # the updates between 100 and 200 were lost with the process
    recorded = sum(
        json.loads((p / "meta.json").read_text())["num_steps"] for p in out.glob("episodes_*")
    )
    assert recorded == 300  # three episodes, not four: the one to 200 was kept, not redone
    rows = (out / "episodes.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:2] for r in rows] == [["0", "100"], ["1", "200"], ["2", "300"]]
    # a run resumed before the fix logged the last episode at the checkpoint's count + 100;
    # scripts/recount_steps.py maps each row to its recorded episode and repairs the axis
    recount = _script("recount_steps")
    csv_path = out / "episodes.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("\n2,300,", "\n2,200,"))  # undercounted, as before
    assert recount.main([str(out), "--write"]) == 0
    fixed = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [r["step"] for r in fixed] == ["100", "200", "300"]
    assert fixed[2]["counted_step"] == "200"  # the old value is kept beside the repaired one
    assert (out / "episodes.csv.orig").read_text() == text.replace("\n2,300,", "\n2,200,")
    # the old resume also dropped the rows of episodes it kept: restored from the recordings
    parts = sorted(out.glob("episodes_*"))
    meta = [e for p in parts for e in json.loads((p / "meta.json").read_text())["episodes"]]
    csv_path.write_text("".join(ln for ln in text.splitlines(True) if not ln.startswith("1,")))
    assert recount.main([str(out), "--write"]) == 0
    back = list(csv.DictReader(csv_path.read_text().splitlines()))
    assert [(r["episode"], r["step"], r["restored"]) for r in back] == [
        ("0", "100", ""), ("1", "200", "1"), ("2", "300", "")
    ]  # fmt: skip
    assert float(back[1]["return"]) == pytest.approx(meta[1]["return"])
    assert back[1]["random"] == "0"  # planned: it started after the 100 seed steps
    csv_path.write_text(text.replace("\n2,300,", "\n5,300,"))  # a row with no recorded episode
    assert recount.main([str(out)]) == 1
    # scripts/reward_prediction.py: the checkpoint's one-step rewards on its own last episodes
    check = _script("reward_prediction")
    capsys.readouterr()
    assert check.main([str(out), "--episodes", "2", "--every", "5"]) == 0
    printed = capsys.readouterr().out
    assert "40 steps of 2 episodes" in printed  # every 5th of 2 × 100 steps
    assert "correlation" in printed
    assert "true cost in [" in printed  # the error by distance to the goal


def test_online_train_resume_and_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert cli(["train", *FAST, "steps=200", f"out={out}", "checkpoint_every=100"]) == 0
    ck = load_checkpoint(out / "checkpoint.pt", expect_model="tdmpc2")
    assert ck.step == 200
    assert ck.updates == 5 + 100
    assert ck.data_stats["obs_std"] != [1.0] * len(ck.data_stats["obs_std"])  # fitted to data
    rows = (out / "episodes.csv").read_text().splitlines()
    assert len(rows) == 3
    assert rows[2].split(",")[-2] == "0"
    assert (out / "train.csv").read_text().count("\n") >= 10
    # a run killed after logging an episode past its checkpoint: the resumed run logs it again
    with (out / "episodes.csv").open("a") as f:
        f.write(rows[2].replace("200", "250", 1) + "\n")
    assert cli(["train", *FAST, "steps=300", f"out={out}", "resume=true"]) == 0
    ck2 = load_checkpoint(out / "checkpoint.pt")
    assert ck2.step == 300
    assert ck2.updates == 205
    episodes = (out / "episodes.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in episodes[1:]] == ["100", "200", "300"]
    # the same rows as TensorBoard scalars, one event file per (re)start
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(out / "tb")).Reload()
    assert {"train/loss", "episode/return", "episode/success"} <= set(tb.Tags()["scalars"])
    assert [e.step for e in tb.Scalars("episode/return")] == [100, 200, 300]
    capsys.readouterr()
    assert (
        cli(
            [
                "eval",
                f"checkpoint={out / 'checkpoint.pt'}",
                "episodes=1",
                "progress=false",
                "threads=1",
            ]
        )
        == 0
    )
    assert "success" in capsys.readouterr().out

    # shipping: the stripped checkpoint drops resume-only state and plans the same
    small = tmp_path / "ship.pt"
    assert cli(["checkpoint-strip", str(out / "checkpoint.pt"), str(small)]) == 0
    stripped = load_checkpoint(small, expect_model="tdmpc2")
    assert stripped.optimizer is None
    assert not stripped.rng
    assert small.stat().st_size < (out / "checkpoint.pt").stat().st_size
    full_model, small_model = ck2.build_model(), stripped.build_model()
    state = full_model.encode({"state": np.zeros(full_model.spec.obs_shapes["state"], np.float32)})
    actions = torch.rand(5, 3, full_model.spec.action_dim) * 2 - 1
    assert torch.equal(
        full_model.rollout(state, actions).rewards, small_model.rollout(state, actions).rewards
    )

    # plan time per control step of the shipped file, as deployed (its planner and budget)
    capsys.readouterr()
    bench_args = ["bench", "checkpoints", str(small), "--steps", "3", "--warmup", "1", "--json"]
    assert cli(bench_args) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["steps"] == 3
    assert row["env"] == "planar-reach"
    assert 0 < row["median_ms"] <= row["max_ms"]
    assert row["period_ms"] == pytest.approx(40.0)
    assert cli(["bench", "checkpoints", str(tmp_path / "missing.pt")]) == 2

    # the README's main job runs on a shipped checkpoint without training first
    capsys.readouterr()
    demo = ["demo", f"checkpoint={small}", "steps=5", f"video.dir={tmp_path}", "video.height=48"]
    assert cli([*demo, "video.width=64"]) in (0, 1)  # 1: not at the target after 5 steps
    text = capsys.readouterr().out
    assert "planar-reach" in text
    assert "plan time: median" in text
    assert "(5 plans)" in text
    assert (tmp_path / "ship-seed0.mp4").is_file()

    # learning curve from the run's episodes.csv
    png = tmp_path / "curve.png"
    assert cli(["curves", str(out), "--out", str(png), "--reference", "published=-5"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_moving_average_is_trailing() -> None:
    from wm_planning.training.curves import moving_average

    np.testing.assert_allclose(moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1, 2, 4, 6])
    with pytest.raises(ValueError, match="window"):
        moving_average(np.ones(3), 0)


def test_offline_train_from_collected_dataset(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli(["collect", "env=planar-reach", "episodes=2", f"out={data}"]) == 0
    out = tmp_path / "off"
    args = ["train", "model=planet_tiny", f"data={data}", "steps=6", "seq_len=10", "batch_size=4"]
    assert cli([*args, f"out={out}", "progress=false", "threads=1", "log_every=3"]) == 0
    ck = load_checkpoint(out / "checkpoint.pt", expect_model="planet")
    assert ck.updates == 6
    assert ck.config["data"] == str(data)
    lines = (out / "train.csv").read_text().splitlines()
    assert lines[0].startswith("updates,")
    assert len(lines) == 3


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.mark.parametrize("name", ["planar_reach_tdmpc2_1m.pt"])
def test_shipped_checkpoint_is_small_and_steers_the_arm(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's main job with a shipped checkpoint: under 20 MB, loads strictly, and its
    plans bring the arm most of the way to the target in 40 steps (a one-seed smoke check; the
    50-seed evaluation is in docs/models.md)."""
    path = SHIPPED / name
    assert path.stat().st_size < 20e6
    ck = load_checkpoint(path, expect_model="tdmpc2")
    assert ck.optimizer is None  # stripped for shipping
    demo = ["demo", f"checkpoint={path}", "seed=3", "steps=40", "video.enabled=false"]
    assert cli(demo) in (0, 1)
    text = capsys.readouterr().out
    start, final = (float(x) for x in text.split("distance ")[1].split(" in ")[0].split(" -> "))
    assert final < 0.3 * start, text


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tmp_path: Path) -> None:
    """``compile=true`` trains the same model (same losses and weights up to float rounding)."""
    data = tmp_path / "data"
    assert cli(["collect", "env=planar-reach", "episodes=2", f"out={data}"]) == 0
    args = ["train", "model=tdmpc2_tiny", f"data={data}", "steps=3", "batch_size=8",
            "progress=false", "threads=1", "log_every=1", "tensorboard=false"]  # fmt: skip
    for mode in ("false", "true"):
        assert cli([*args, f"out={tmp_path / mode}", f"compile={mode}"]) == 0
    eager, compiled = (load_checkpoint(tmp_path / m / "checkpoint.pt") for m in ("false", "true"))
    for k, v in eager.weights.items():
        assert torch.allclose(v.float(), compiled.weights[k].float(), atol=1e-4), k
    rows = [(tmp_path / m / "train.csv").read_text().splitlines()[1:] for m in ("false", "true")]
    header = (tmp_path / "false" / "train.csv").read_text().splitlines()[0].split(",")
    i = header.index("loss")
    losses = [[float(r.split(",")[i]) for r in rs] for rs in rows]
    assert np.allclose(losses[0], losses[1], rtol=1e-4)


def test_action_repeat_flows_from_training_to_evaluation(tmp_path: Path) -> None:
    """A checkpoint trained with ``action_repeat=2`` is evaluated in an env stepping the same."""
    from test_ros_models import save_tiny_checkpoint  # tests/ is on sys.path under pytest

    from wm_planning.envs.randomization import RandomizationConfig
    from wm_planning.eval.policies import CheckpointPolicy, PolicyConfig, make_real_env
    from wm_planning.training import make_env

    ck = save_tiny_checkpoint(tmp_path / "ar.pt", train_extra={"action_repeat": 2})
    policy = CheckpointPolicy(PolicyConfig(policy="checkpoint", checkpoint=str(ck)))
    assert policy.action_repeat == 2
    env, base = make_real_env(policy, RandomizationConfig()), make_env("planar-reach", False, 64)
    assert env.spec.control_dt == pytest.approx(2 * base.spec.control_dt)
    env.close()
    base.close()

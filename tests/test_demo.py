"""`wm-plan demo` on the planar arm with a small budget: gets to the target and writes a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wm_planning.cli import main
from wm_planning.commands.demo import make_env
from wm_planning.config import compose


@pytest.fixture(autouse=True)
def _egl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")


def test_demo_planar_reaches_and_writes_video(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    overrides = [
        "robot=planar",
        "task=reach",
        "seed=1",
        "steps=40",
        "planner.num_samples=64",
        "planner.iterations=2",
        "video.height=96",
        "video.width=128",
        f"video.dir={tmp_path}",
    ]
    rc = main(["demo", *overrides])
    out = capsys.readouterr().out
    assert "plan time: median" in out
    video = tmp_path / "planar-reach-seed1.mp4"
    assert video.is_file()
    assert video.stat().st_size > 1000
    import imageio.v2 as imageio

    frames = imageio.mimread(video)
    assert len(frames) == 41
    assert frames[0].shape[:2] == (96, 128)
    # compare with doing nothing from the same start
    env = make_env(compose("demo", overrides))
    env.reset(1)
    for _ in range(40):
        *_, info = env.step(np.zeros(env.spec.action_dim))
    zero_distance = info["distance"]
    final = float(out.split("->")[1].split()[0])
    assert rc == 0 or final < 0.25 * zero_distance, out
    assert final < 0.25 * zero_distance

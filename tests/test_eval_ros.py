"""`wm-plan eval path=ros`: closed-loop episodes through the MuJoCo arm node and the planner node
(separate processes over DDS, localhost discovery, a domain id of this test's own)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from wm_planning.commands.evaluate import RosPolicy, ros_node_params
from wm_planning.envs.randomization import RandomizationConfig
from wm_planning.eval import EpisodeRecord, HarnessConfig
from wm_planning.eval.policies import make_eval_env

ROOT = Path(__file__).resolve().parents[1]
ENV = "planar-goal_reach"
SEED = 1_000_000
# Easy and cheap: joint goals within 0.1 rad, 2 s episodes, a small MPPI budget (~10 ms plans
# against the 40 ms deadline even on a loaded 2-core machine).
ARGS = [
    "model=mujoco",
    f"env={ENV}",
    "episodes=2",
    f"seed={SEED}",
    "steps=50",
    "planner_options={num_samples:32,iterations:1}",
    "horizon=8",
    "nthread=1",
    "threads=1",
    "progress=false",
    "path=ros",
    # margin for a loaded machine: a late plan is dropped, not executed
    "ros.overrides={wm_planner:{plan_deadline:0.1}}",
]


def _columns() -> list[str]:
    fields = [f.name for f in dataclasses.fields(EpisodeRecord) if f.name != "knobs"]
    return fields + [f"knob.{k}" for k in dataclasses.asdict(RandomizationConfig())]


def test_node_params_follow_the_eval_config() -> None:
    rp = RosPolicy(
        env_name="planar-reach",
        label="ros:mujoco/mppi",
        planner_name="mppi",
        planner_params={
            "planner": "mppi",
            "planner_overrides": ["num_samples=32"],
            "replan_every": 2,
        },
        goal="pose",
    )
    hcfg = HarnessConfig(seed=7, randomization=RandomizationConfig(mass=0.3, latency=1))
    ros_cfg = {"real_time_factor": 1.0, "overrides": {"wm_planner": {"plan_deadline": 0.1}}}
    data = ros_node_params(rp, hcfg, ros_cfg)
    arm = data["mujoco_arm"]["ros__parameters"]
    planner = data["wm_planner"]["ros__parameters"]
    assert data["/**"]["ros__parameters"]["robot"] == "planar"
    assert arm["task"] == "reach"
    assert arm["randomization_overrides"] == ["mass=0.3", "latency=1"]
    assert arm["camera_rate"] == 0.0
    assert planner["pose_task"] == "reach"  # reach goals are poses
    assert planner["planner_overrides"] == ["num_samples=32"]
    assert planner["control_rate"] == 25.0  # one tick per env step
    assert planner["seed"] == 7
    assert planner["plan_deadline"] == 0.1  # ros.overrides win
    assert planner["camera_topic"] == ""
    with pytest.raises(ValueError, match="path=ros runs the arm envs"):
        ros_node_params(dataclasses.replace(rp, env_name="panda-push"), hcfg, ros_cfg)


@pytest.mark.timeout(240)
def test_eval_through_ros_nodes(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    out = tmp_path / "run"
    domain = 1 + (os.getpid() * 2 + 5) % 200
    cmd = [
        str(Path(sys.executable).with_name("wm-plan")),
        "eval",
        *ARGS,
        f"ros.domain_id={domain}",
        f"hydra.run.dir={out}",
    ]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    # Its own process group: the nodes and the client die with it whatever happens here.
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        text = proc.communicate(timeout=180)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    logs = "".join(f"\n--- {p.name} ---\n{p.read_text()[-3000:]}" for p in out.glob("ros_*.log"))
    assert proc.returncode == 0, text + logs
    assert "Traceback" not in text, text

    # the same result files and columns as the in-process path
    for f in ("episodes.csv", "episodes.json", "summary.md", "summary.json"):
        assert (out / f).is_file(), f
    with open(out / "episodes.csv") as f:
        assert next(csv.reader(f)) == _columns()
    rows = json.loads((out / "episodes.json").read_text())
    assert [r["seed"] for r in rows] == [SEED, SEED + 1]
    for r in rows:
        assert r["path"] == "ros"
        assert r["policy"] == "ros:mujoco/mppi"
        assert r["steps"] == 50
        assert r["plans"] > 0
        assert math.isnan(r["pred_distance_err"])  # not measured through ROS
    assert any(r["success"] for r in rows), rows
    assert "ros:mujoco/mppi" in (out / "summary.md").read_text()

    # goals and starts are the in-process harness's for the same seeds, on the arm node too
    raw = [json.loads(line) for line in (out / "ros_episodes.jsonl").read_text().splitlines()]
    harness_env = make_eval_env(ENV, RandomizationConfig())
    try:
        for r in raw:
            harness_env.reset(r["seed"])
            goal, start = harness_env.env.target, harness_env.env.q_ref
            np.testing.assert_array_equal(r["goal"], goal)
            np.testing.assert_array_equal(r["arm_goal"], goal)
            np.testing.assert_array_equal(r["arm_start"], start)
    finally:
        harness_env.close()
    params = yaml.safe_load((out / "ros_params.yaml").read_text())["wm_planner"]["ros__parameters"]
    assert params["model"] == "mujoco"
    assert params["plan_deadline"] == 0.1

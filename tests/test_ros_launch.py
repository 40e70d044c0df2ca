"""Starting the nodes: the launch file compiles, `wm-plan ros up` parses its options, starts both
nodes as processes and stops them cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from wm_planning.commands import ros

ROOT = Path(__file__).resolve().parents[1]


def test_launch_file_compiles() -> None:
    path = ROOT / "launch" / "wm_planning.launch.py"
    code = compile(path.read_text(), str(path), "exec")
    assert "generate_launch_description" in code.co_names


def test_ros_params_files_name_both_nodes() -> None:
    for path in sorted((ROOT / "configs" / "ros").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert {"mujoco_arm", "wm_planner"} <= set(data), path
        for section in data.values():
            assert "ros__parameters" in section, path


def test_parse_options_and_overrides(tmp_path: Path) -> None:
    opts = ros.parse(
        ["ros=planar", "wm_planner.replan_every=5", "mujoco_arm.cameras=[scene]", "nodes=arm"]
    )
    assert opts.nodes == ["arm"]
    assert opts.overrides == {
        "wm_planner": {"replan_every": 5},
        "mujoco_arm": {"cameras": ["scene"]},
    }
    merged = yaml.safe_load(ros.params_file(opts, tmp_path).read_text())
    assert merged["wm_planner"]["ros__parameters"]["replan_every"] == 5
    assert merged["wm_planner"]["ros__parameters"]["planner"] == "cem"  # the rest is kept
    for bad, match in [
        (["ros=nope"], "not found"),
        (["nodes=arm,viewer"], "nodes must be"),
        (["planner.horizon=3"], "unknown option"),
        (["horizon"], "key=value"),
        (["duration=0"], "duration"),
    ]:
        with pytest.raises(ValueError, match=match):
            ros.parse(bad)


def test_ros_up_starts_and_stops_on_ctrl_c() -> None:
    pytest.importorskip("rclpy")
    env = {
        **os.environ,
        "ROS_DOMAIN_ID": str(1 + (os.getpid() * 2 + 7) % 200),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    }
    wm_plan = Path(sys.executable).with_name("wm-plan")
    proc = subprocess.Popen(
        [str(wm_plan), "ros", "up", "ros=planar"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the whole group, as in a terminal
    )
    out: list[str] = []
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            chunk = proc.stdout.read()
            if chunk:
                out.append(chunk.decode())
            text = "".join(out)
            if "simulating planar" in text and "configured: planar" in text:
                break
            assert proc.poll() is None, text
            time.sleep(0.2)
        else:
            pytest.fail("nodes did not come up:\n" + "".join(out))
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    os.set_blocking(proc.stdout.fileno(), True)
    text = "".join(out) + proc.stdout.read().decode()
    assert rc == 0, text
    assert "Traceback" not in text, text

"""``wm-plan ros up`` / ``wm-plan ros bench``: start the ROS 2 nodes as separate processes.

The library never imports rclpy, so these commands only spawn ``python -m ros_nodes.<node>
--ros-args --params-file configs/ros/<name>.yaml`` (with ``AMENT_PREFIX_PATH`` pointing at the
environment's ROS 2 wheels unless already set) and stop them cleanly on Ctrl-C: SIGINT first,
then SIGTERM and SIGKILL for a process that does not exit in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wm_planning.cli import command
from wm_planning.config import config_dir

NODES = {
    "arm": ("ros_nodes.mujoco_arm_node", "mujoco_arm"),
    "planner": ("ros_nodes.planner_node", "wm_planner"),
}

USAGE = """usage: wm-plan ros {up|bench} [ros=NAME] [params_file=PATH] [nodes=arm,planner]
                       [NODE.PARAM=VALUE ...] [duration=S]

  ros=NAME          configs/ros/NAME.yaml (default planar); params_file=PATH uses another file
  nodes=...         which nodes to start (up only): arm, planner or both (default)
  NODE.PARAM=VALUE  override one parameter of node mujoco_arm or wm_planner, e.g.
                    wm_planner.replan_every=5 (values parsed as YAML)
  duration=S        bench only: seconds of goal-switching to measure (default 30)
  goal=KIND         bench only: joints (default), pose or image goals
  period=S          bench only: seconds between goals (default 3)

ROS_AUTOMATIC_DISCOVERY_RANGE defaults to LOCALHOST and ROS_DOMAIN_ID to the environment's."""


@dataclass
class Options:
    params_file: Path
    nodes: list[str]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    duration: float = 30.0
    goal: str = "joints"
    period: float = 3.0


def parse(argv: list[str]) -> Options:
    """Parse ``key=value`` options; raises ``ValueError`` with a clear message."""
    ros, params_file, nodes, duration, goal = "planar", "", "arm,planner", 30.0, "joints"
    period = 3.0
    overrides: dict[str, dict[str, Any]] = {}
    known_nodes = {ros_name for _, ros_name in NODES.values()}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"expected key=value, got {arg!r}")
        if key == "ros":
            ros = value
        elif key == "params_file":
            params_file = value
        elif key == "nodes":
            nodes = value
        elif key == "duration":
            duration = float(value)
        elif key == "goal":
            goal = value
        elif key == "period":
            period = float(value)
        elif "." in key and key.split(".", 1)[0] in known_nodes:
            node, param = key.split(".", 1)
            overrides.setdefault(node, {})[param] = yaml.safe_load(value)
        else:
            raise ValueError(
                f"unknown option {key!r}; node parameters are NODE.PARAM with NODE in {sorted(known_nodes)}"
            )
    path = Path(params_file) if params_file else config_dir() / "ros" / f"{ros}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (config_dir() / "ros").glob("*.yaml"))
        raise ValueError(f"params file {path} not found; configs/ros has {options}")
    chosen = [n.strip() for n in nodes.split(",") if n.strip()]
    bad = [n for n in chosen if n not in NODES]
    if bad or not chosen:
        raise ValueError(f"nodes must be a comma list of {sorted(NODES)}, got {nodes!r}")
    if not duration > 0 or not period > 0:
        raise ValueError(f"duration and period must be > 0, got {duration}, {period}")
    if goal not in ("joints", "pose", "image"):
        raise ValueError(f"goal must be joints, pose or image, got {goal!r}")
    return Options(path, chosen, overrides, duration, goal, period)


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def params_file(opts: Options, tmp: Path) -> Path:
    """The params file, with command-line overrides merged into the node sections."""
    if not opts.overrides:
        return opts.params_file
    data = yaml.safe_load(opts.params_file.read_text()) or {}
    for node, params in opts.overrides.items():
        data.setdefault(node, {}).setdefault("ros__parameters", {}).update(params)
    path = tmp / opts.params_file.name
    path.write_text(yaml.safe_dump(data))
    return path


def start(
    names: list[str], params: Path, env: dict[str, str], log_dir: Path | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Start the nodes ``names`` with ``params``; their output goes to ``log_dir/ros_<name>.log``
    when given (else to this terminal)."""
    procs = {}
    for name in names:
        module, _ = NODES[name]
        cmd = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)]
        print(f"[ros] starting {name}: {' '.join(cmd)}", flush=True)
        if log_dir is None:
            procs[name] = subprocess.Popen(cmd, env=env)
            continue
        with open(log_dir / f"ros_{name}.log", "wb") as log:  # the child keeps its own handle
            procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    return procs


def stop(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGINT every node (rclpy shuts down cleanly), then escalate for stragglers."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in procs.values()):
            time.sleep(0.05)
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(sig)
    for p in procs.values():
        p.wait()


def _wait(procs: dict[str, subprocess.Popen[bytes]]) -> int:
    """Until a node exits (its code is returned) or Ctrl-C (0)."""
    try:
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(
                        f"[ros] {name} exited with {p.returncode}; stopping the others",
                        file=sys.stderr,
                    )
                    return p.returncode or 0
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("[ros] Ctrl-C: stopping nodes", flush=True)
        return 0


def _options(name: str, argv: list[str]) -> Options | int:
    """Parsed options, or the exit code after printing usage (``--help``: 0, bad input: 2)."""
    if "--help" in argv or "-h" in argv:
        print(USAGE)
        return 0
    try:
        return parse(argv)
    except ValueError as e:
        print(f"wm-plan {name}: {e}\n\n{USAGE}", file=sys.stderr)
        return 2


@command(
    "ros up", help="start the MuJoCo arm node and the planner node (ROS 2, separate processes)"
)
def up(argv: list[str]) -> int:
    opts = _options("ros up", argv)
    if isinstance(opts, int):
        return opts
    with tempfile.TemporaryDirectory(prefix="wm_ros_") as tmp:
        procs = start(opts.nodes, params_file(opts, Path(tmp)), ros_env())
        try:
            return _wait(procs)
        finally:
            stop(procs)


@command("ros bench", help="measure the planner node's input-to-command latency and control rate")
def bench(argv: list[str]) -> int:
    opts = _options("ros bench", argv)
    if isinstance(opts, int):
        return opts
    env = ros_env()
    with tempfile.TemporaryDirectory(prefix="wm_ros_") as tmp:
        params = params_file(opts, Path(tmp))
        procs = start(["arm", "planner"], params, env)
        try:
            client = [
                sys.executable,
                "-m",
                "ros_nodes.bench",
                f"duration={opts.duration}",
                f"params_file={params}",
                f"goal={opts.goal}",
                f"period={opts.period}",
            ]
            return subprocess.run(client, env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130
        finally:
            stop(procs)

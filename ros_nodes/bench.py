"""Measurement client for ``wm-plan ros bench`` (run by it beside the arm and planner nodes).

Sends a new goal every ``period`` seconds for ``duration`` seconds, counts the command
messages the planner publishes, and prints one JSON line with the planner's own measurements from
``~/status``: input-to-command latency p50/p99 (joint state received -> command published),
plan time, tick and plan rates, deadline misses, clamped commands.

Usage: ``python -m ros_nodes.bench duration=30 params_file=configs/ros/planar.yaml [period=3]
[goal=joints|pose|image]``; ``goal=pose`` sends end-effector positions drawn as the ``pose_task``
(a reach task) draws its targets, ``goal=image`` the scene rendered at the goal configuration
(``ArmEnv.render``), exercising the image-goal planning path. A goal counts as reached within
0.1 rad (joint and image goals) or 5 cm (pose goals) when the next one is sent.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from geometry_msgs.msg import Point, PoseStamped
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

import robots

GOAL_KINDS = ("joints", "pose", "image")


def _params(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for section in ("/**", "wm_planner"):
        out.update((data.get(section) or {}).get("ros__parameters", {}))
    return out


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    duration = float(args.get("duration", 30))
    period = float(args.get("period", 3))
    kind = args.get("goal", "joints")
    if kind not in GOAL_KINDS:
        raise SystemExit(f"goal must be one of {GOAL_KINDS}, got {kind!r}")
    params = _params(Path(args["params_file"]))
    robot = robots.get(params.get("robot", "planar"))
    env: Any = None
    controller = params.get("controller", "arm_controller")
    rclpy.init()
    node = rclpy.create_node("wm_bench")
    status: list[dict[str, Any]] = []
    commands: list[float] = []
    q: list[np.ndarray] = []
    node.create_subscription(
        String, "/wm_planner/status", lambda m: status.append(json.loads(m.data)), 10
    )
    node.create_subscription(
        JointState, "/joint_states", lambda m: q.append(np.array(m.position)), 10
    )
    node.create_subscription(
        JointTrajectory,
        f"/{controller}/joint_trajectory",
        lambda m: commands.append(time.monotonic()),
        100,
    )
    node.create_subscription(
        Float64MultiArray,
        f"/{controller}/commands",
        lambda m: commands.append(time.monotonic()),
        100,
    )
    goal_pub = node.create_publisher(JointState, "/wm_planner/goal_joints", 10)
    image_pub = node.create_publisher(Image, "/wm_planner/goal_image", 10)
    pose_pub = node.create_publisher(PoseStamped, "/wm_planner/goal_pose", 10)
    if kind != "joints":
        from wm_planning.envs.arm import ArmEnv

        task = params.get("pose_task", "reach") if kind == "pose" else params.get("task")
        env = ArmEnv(robot, task or "goal_reach")

    def reached(goal: Any) -> bool:
        if not q:
            return False
        if kind != "pose":
            return bool(np.max(np.abs(q[-1] - goal)) < 0.1)
        env.set_joints(q[-1])
        return bool(np.linalg.norm(env.ee_pos() - goal) < 0.05)

    try:
        end = time.monotonic() + 180
        while not (status and status[-1]["input_ages_ms"].get("joint_states") is not None):
            rclpy.spin_once(node, timeout_sec=0.05)
            if time.monotonic() > end:
                print(json.dumps({"error": "planner never saw joint states"}))
                return 1
        rng = np.random.default_rng(0)
        home, lo, hi = np.asarray(robot.home), robot.lower, robot.upper
        t0 = time.monotonic()
        next_goal, goals, n_reached = t0, 0, 0
        goal: Any = home
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            if now >= next_goal:
                if goals and reached(goal):
                    n_reached += 1
                goal = np.clip(home + rng.uniform(-0.8, 0.8, size=home.size), lo + 0.1, hi - 0.1)
                if kind == "joints":
                    goal_pub.publish(
                        JointState(name=list(robot.joint_names), position=goal.tolist())
                    )
                elif kind == "pose":
                    env.reset(seed=goals)  # a target as the reach task samples them
                    goal = env.target.copy()
                    msg = PoseStamped()
                    msg.header.frame_id = params.get("world_frame", "world")
                    msg.pose.position = Point(x=float(goal[0]), y=float(goal[1]), z=float(goal[2]))
                    pose_pub.publish(msg)
                else:
                    # Pixel costs are local: image goals stay near the current configuration.
                    start = q[-1] if q else home
                    goal = np.clip(
                        start + rng.uniform(-0.4, 0.4, size=home.size), lo + 0.1, hi - 0.1
                    )
                    env.set_joints(goal)
                    size = params.get("image_size", [48, 64])
                    img = env.render(size=(int(size[0]), int(size[1])))
                    h, w, _ = img.shape
                    image_pub.publish(
                        Image(height=h, width=w, encoding="rgb8", step=3 * w, data=img.tobytes())
                    )
                goals += 1
                next_goal = now + period
            rclpy.spin_once(node, timeout_sec=0.01)
        if reached(goal):
            n_reached += 1
        s = status[-1] if status else {}
        in_window = [t for t in commands if t >= t0]
        print(
            json.dumps(
                {
                    "robot": robot.name,
                    "goal": kind,
                    "duration_s": duration,
                    "goals": goals,
                    "goals_reached": n_reached,
                    "reached_within": "5 cm" if kind == "pose" else "0.1 rad",
                    "latency_ms": s.get("latency_ms"),
                    "plan_time_ms_p50": s.get("plan_time_ms"),
                    "tick_rate_hz": s.get("tick_rate_hz"),
                    "plan_rate_hz": s.get("plan_rate_hz"),
                    "command_msgs_per_s": round(len(in_window) / duration, 2),
                    "plans": s.get("plans"),
                    "deadline_misses": s.get("deadline_misses"),
                    "commands_clamped": s.get("commands_clamped"),
                }
            ),
            flush=True,
        )
        return 0
    finally:
        if env is not None:
            env.close()
        node.destroy_node()
        rclpy.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

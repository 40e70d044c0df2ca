"""ROS 2 nodes across processes over DDS (localhost discovery, a domain id of this test's own).

1. End to end: the MuJoCo arm node and the planner node in separate processes; the planner
   commands the planar arm through ``/arm_controller/joint_trajectory`` to a goal given as joint
   positions, then to a goal given as an image.
2. Bad input: the test plays the robot (publishes ``/joint_states``) for a planner node that
   streams forward commands, sends malformed messages of every kind, then lets the joint states
   go stale: the node stays up, logs, never commands outside the limits and holds within 100 ms.
3. A learned checkpoint: a planner node with ``model: checkpoint`` (a tiny TD-MPC2 of
   planar-reach, its own planner and policy prior) plans towards a pose goal from the joint
   states the test publishes, within the limits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")

from geometry_msgs.msg import PoseStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray, String  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

import robots  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLANAR = robots.get("planar")
LOWER, UPPER, VMAX = PLANAR.lower, PLANAR.upper, np.asarray(PLANAR.velocity_limits)
STARTUP_S = 120.0  # imports and DDS discovery on a loaded 2-core machine


def _domain(offset: int) -> int:
    return 1 + (os.getpid() * 2 + offset) % 200


class Nodes:
    """Node processes plus an in-test rclpy node on one domain; everything is torn down."""

    def __init__(self, tmp: Path, domain: int) -> None:
        self.tmp, self.domain = tmp, domain
        self.env = {
            **os.environ,
            "AMENT_PREFIX_PATH": str(Path(sys.executable).parents[1]),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_DOMAIN_ID": str(domain),
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "PYTHONUNBUFFERED": "1",
        }
        os.environ.update(
            {k: self.env[k] for k in ("AMENT_PREFIX_PATH", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
        )
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node(f"test_probe_{os.getpid()}", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.status: list[dict[str, Any]] = []
        self.node.create_subscription(
            String, "/wm_planner/status", lambda m: self.status.append(json.loads(m.data)), 10
        )

    def start(self, module: str, params: dict[str, Any]) -> None:
        path = self.tmp / f"{module}.yaml"
        path.write_text(yaml.safe_dump(params))
        log = self.tmp / f"{module}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", f"ros_nodes.{module}", "--ros-args", "--params-file", str(path)],
            cwd=ROOT,
            env=self.env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.procs[module] = (proc, log)

    def logs(self) -> str:
        return "\n".join(
            f"--- {m} ---\n{log.read_text()[-4000:]}" for m, (_, log) in self.procs.items()
        )

    def alive(self) -> None:
        for m, (proc, _) in self.procs.items():
            assert proc.poll() is None, f"{m} exited with {proc.returncode}\n{self.logs()}"

    def spin_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)
            if cond():
                return
            self.alive()
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def call(self, srv_type: Any, name: str, request: Any) -> Any:
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=30.0), (
            f"service {name} not available\n{self.logs()}"
        )
        future = client.call_async(request)
        self.spin_until(future.done, 30.0, f"reply of {name}")
        return future.result()

    def close(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc, _ in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Nodes]:
    offsets = {"end_to_end": 0, "bad_input": 1, "checkpoint": 2, "goal_image": 5}
    n = Nodes(tmp_path, _domain(next(v for k, v in offsets.items() if k in request.node.name)))
    try:
        yield n
    finally:
        n.close()


PLANNER = {
    "robot": "planar",
    "model": "mujoco",
    "planner": "cem",
    "planner_overrides": ["population=16", "elites=4", "iterations=3"],
    "horizon": 12,
    "control_rate": 25.0,
    "replan_every": 5,
    "plan_deadline": 0.3,
    "max_input_age": 0.5,
    "status_rate": 5.0,
    "image_size": [48, 64],  # the 160x120 camera's aspect
}


def _joint_goal(q: np.ndarray) -> JointState:
    order = [2, 0, 1]  # not the robot's order: the node matches by name
    return JointState(
        name=[PLANAR.joint_names[i] for i in order], position=[float(q[i]) for i in order]
    )


def _traj_ok(msg: JointTrajectory, joint_state: np.ndarray | None) -> str | None:
    """Why a trajectory breaks the limits (None when it does not)."""
    idx = [PLANAR.joint_names.index(n) for n in msg.joint_names]
    prev, t_prev = joint_state, 0.0
    for pt in msg.points:
        q = np.empty(3)
        q[idx] = pt.positions
        t = pt.time_from_start.sec + pt.time_from_start.nanosec * 1e-9
        if np.any(q < LOWER - 1e-9) or np.any(q > UPPER + 1e-9):
            return f"point {q} outside the position limits"
        if (
            prev is not None
            and t_prev > 0
            and np.any(np.abs(q - prev) > VMAX * (t - t_prev) + 1e-6)
        ):
            return f"point {q} faster than the velocity limits from {prev}"
        prev, t_prev = q, t
    return None


def test_end_to_end_joint_and_image_goals(nodes: Nodes) -> None:
    from wm_planning.envs.arm import ArmEnv

    nodes.start(
        "mujoco_arm_node",
        {
            "mujoco_arm": {
                "ros__parameters": {"robot": "planar", "task": "goal_reach", "camera_rate": 5.0}
            }
        },
    )
    nodes.start("planner_node", {"wm_planner": {"ros__parameters": PLANNER}})
    q_now: list[np.ndarray] = []
    trajs: list[JointTrajectory] = []
    nodes.node.create_subscription(
        JointState, "/joint_states", lambda m: q_now.append(np.array(m.position)), 10
    )
    nodes.node.create_subscription(
        JointTrajectory, "/arm_controller/joint_trajectory", trajs.append, 10
    )
    goal_pub = nodes.node.create_publisher(JointState, "/wm_planner/goal_joints", 10)
    image_pub = nodes.node.create_publisher(Image, "/wm_planner/goal_image", 10)
    nodes.spin_until(
        lambda: (
            bool(nodes.status)
            and nodes.status[-1]["input_ages_ms"]["joint_states"] is not None
            and bool(q_now)
        ),
        STARTUP_S,
        "the planner to see joint states",
    )
    assert nodes.status[-1]["mode"] == "holding"
    assert nodes.status[-1]["reason"] == "no goal"

    for pub in (goal_pub, image_pub):  # discovery before sending
        nodes.spin_until(
            lambda p=pub: p.get_subscription_count() > 0, 30.0, f"a subscriber on {pub.topic_name}"
        )
    goal = np.array([1.0, -0.5, 0.8])
    goal_pub.publish(_joint_goal(goal))
    nodes.spin_until(
        lambda: np.max(np.abs(q_now[-1] - goal)) < 0.1, 60.0, f"the arm to reach {goal}"
    )
    assert trajs, "no joint trajectory was published"
    for msg in trajs:
        assert _traj_ok(msg, None) is None, _traj_ok(msg, None)

    # Image goal: the scene rendered (by this test, at another size) with the arm at the goal.
    goal2 = np.array([0.4, 0.2, 0.4])  # near the first goal: pixel costs are local
    env = ArmEnv("planar", "goal_reach")
    env.set_joints(goal2)
    img = env.render(size=(96, 128))
    env.close()
    image_pub.publish(
        Image(height=96, width=128, encoding="rgb8", step=3 * 128, data=img.tobytes())
    )
    nodes.spin_until(
        lambda: np.max(np.abs(q_now[-1] - goal2)) < 0.15,
        90.0,
        f"the arm to reach the image goal {goal2}",
    )
    nodes.spin_for(0.5)
    s = nodes.status[-1]
    assert s["goal"] == "image", s
    assert s["mode"] == "planning", s
    assert s["plans"] > 0, s
    assert s["plan_errors"] == 0, s
    assert s["latency_ms"]["n"] > 0, s
    for msg in trajs:
        assert _traj_ok(msg, None) is None, _traj_ok(msg, None)
    # Reset service of the simulator: back to home.
    assert nodes.call(Trigger, "/mujoco_arm/reset_world", Trigger.Request()).success


def test_bad_input_and_stale_inputs_hold(nodes: Nodes) -> None:
    params = {
        **PLANNER,
        "command_interface": "forward_command",
        "controller": "test_ctrl",
        "max_input_age": 0.3,
        "max_image_pixels": 100_000,
        "camera_topic": "/cam/color",
        "replan_every": 3,
        "plan_deadline": 0.0,
    }
    nodes.start("planner_node", {"wm_planner": {"ros__parameters": params}})
    cmds: list[tuple[float, np.ndarray]] = []
    nodes.node.create_subscription(
        Float64MultiArray,
        "/test_ctrl/commands",
        lambda m: cmds.append((time.monotonic(), np.array(m.data))),
        100,
    )
    js_pub = nodes.node.create_publisher(JointState, "/joint_states", 10)
    goal_pub = nodes.node.create_publisher(JointState, "/wm_planner/goal_joints", 10)
    pose_pub = nodes.node.create_publisher(PoseStamped, "/wm_planner/goal_pose", 10)
    image_pub = nodes.node.create_publisher(Image, "/wm_planner/goal_image", 10)
    cam_pub = nodes.node.create_publisher(Image, "/cam/color", 10)
    q_meas = np.array([0.2, 0.4, -0.3])
    last_js = [0.0]
    publishing = [True]

    def publish_js() -> None:
        if publishing[0]:
            js_pub.publish(
                JointState(
                    name=list(PLANAR.joint_names), position=q_meas.tolist(), velocity=[0.0] * 3
                )
            )
            last_js[0] = time.monotonic()

    nodes.node.create_timer(0.02, publish_js)
    nodes.spin_until(
        lambda: (
            bool(nodes.status) and nodes.status[-1]["input_ages_ms"]["joint_states"] is not None
        ),
        STARTUP_S,
        "the planner to see joint states",
    )
    goal_pub.publish(_joint_goal(np.array([1.2, -0.8, 0.9])))
    nodes.spin_until(lambda: nodes.status[-1]["plans"] >= 2, 60.0, "plans")

    nan, js_names = float("nan"), list(PLANAR.joint_names)
    bad: list[tuple[Any, Any]] = [
        (js_pub, JointState(name=js_names, position=[0.1, nan, 0.2])),
        (js_pub, JointState()),
        (js_pub, JointState(name=js_names, position=[0.1, 0.2])),
        (js_pub, JointState(name=["elbow", "wrist"], position=[0.1, 0.2])),
        (goal_pub, JointState(name=js_names, position=[0.1, nan, 0.2])),
        (goal_pub, JointState(name=js_names[:2], position=[0.1, 0.2])),
        (goal_pub, JointState(name=js_names, position=[9.0, 0.0, 0.0])),  # outside the limits
        (pose_pub, PoseStamped()),  # fine geometry, but see the frame below
        (image_pub, Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64))),
        (image_pub, Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10))),
        (
            image_pub,
            Image(height=1000, width=1000, encoding="mono8", step=1000, data=bytes(1_000_000)),
        ),
        (image_pub, Image()),
        (cam_pub, Image(height=2, width=2, encoding="bayer_rggb8", step=2, data=bytes(4))),
    ]
    bad[7][1].header.frame_id = "camera_link"
    for pub in (js_pub, goal_pub, pose_pub, image_pub, cam_pub):  # discovery before sending
        nodes.spin_until(
            lambda p=pub: p.get_subscription_count() > 0, 30.0, f"a subscriber on {pub.topic_name}"
        )
    for pub, msg in bad:
        pub.publish(msg)
        nodes.spin_for(0.05)
    nodes.spin_for(1.0)
    nodes.alive()
    s = nodes.status[-1]
    dropped = s["dropped_inputs"]
    expected = {
        "joint_states": ("joint_nan", "joint_empty", "joint_length", "joint_names"),
        "goal_joints": ("joint_nan", "goal_joints_names", "goal_joints_limits"),
        "goal_pose": ("goal_pose_frame",),
        "goal_image": ("image_encoding", "image_data", "image_size"),
        "camera image": ("image_encoding",),
    }
    for source, keys in expected.items():
        for key in keys:
            assert f"{source}: {key}" in dropped, (source, key, dropped)
    # bad goals did not replace the good one
    assert s["goal"] == "joints", s
    assert s["mode"] == "planning", s
    log = nodes.procs["planner_node"][1].read_text()
    assert "unsupported image encoding '32FC1'" in log
    assert "non-finite" in log

    # Inputs go stale: the node must hold the last measured position within 100 ms.
    publishing[0] = False
    t_stale = last_js[0] + params["max_input_age"]
    nodes.spin_until(
        lambda: bool(cmds) and cmds[-1][0] > t_stale + 0.5,
        10.0,
        "commands after the inputs went stale",
    )
    after = [(t, q) for t, q in cmds if t > t_stale]
    first_hold = next(t for t, q in after if np.allclose(q, q_meas, atol=1e-9))
    print(f"hold commanded {1e3 * (first_hold - t_stale):.1f} ms after the joint states went stale")
    assert first_hold - t_stale <= 0.1, (
        f"held {1e3 * (first_hold - t_stale):.0f} ms after going stale"
    )
    assert all(np.allclose(q, q_meas, atol=1e-9) for t, q in after if t >= first_hold), (
        "a stale plan was replayed"
    )
    nodes.spin_until(
        lambda: "stale" in nodes.status[-1]["reason"], 5.0, "status to report stale input"
    )
    assert nodes.status[-1]["mode"] == "holding"

    # Every command ever sent: within the position limits, and within the velocity limits per
    # period relative to the previous command; a hold commands the measured position instead
    # (this fake robot never moves, so the plan's commands ran ahead of it).
    period = 1.0 / params["control_rate"]
    prev = None
    for _, q in cmds:
        assert np.all(q >= LOWER), q
        assert np.all(q <= UPPER), q
        if prev is not None and not np.allclose(q, q_meas, atol=1e-9):
            assert np.all(np.abs(q - prev) <= VMAX * 2 * period + 1e-9), (prev, q)
        prev = q

    # Fresh inputs resume planning; enable(false) and reset hold again.
    publishing[0] = True
    nodes.spin_until(lambda: nodes.status[-1]["mode"] == "planning", 10.0, "planning to resume")
    assert nodes.call(SetBool, "/wm_planner/enable", SetBool.Request(data=False)).success
    nodes.spin_until(lambda: nodes.status[-1]["reason"] == "disabled", 5.0, "disabled status")
    assert nodes.call(SetBool, "/wm_planner/enable", SetBool.Request(data=True)).success
    assert nodes.call(Trigger, "/wm_planner/reset", Trigger.Request()).success
    nodes.spin_until(
        lambda: nodes.status[-1]["reason"] == "no goal", 5.0, "reset to clear the goal"
    )
    nodes.alive()


def test_checkpoint_model_plans_towards_a_pose_goal(nodes: Nodes, tmp_path: Path) -> None:
    from test_ros_models import save_tiny_checkpoint  # tests/ is on sys.path under pytest

    ck = save_tiny_checkpoint(tmp_path / "tiny.pt")
    params = {
        "robot": "planar",
        "model": "checkpoint",
        "checkpoint": str(ck),
        "planner": "",  # the checkpoint's: tdmpc2_mppi with its training options
        "planner_overrides": [],
        "horizon": 0,  # the planner's (3)
        "replan_every": 2,
        "max_input_age": 0.5,
        "status_rate": 5.0,
        "camera_topic": "",
        "controller": "ck_ctrl",
    }
    nodes.start("planner_node", {"wm_planner": {"ros__parameters": params}})
    trajs: list[JointTrajectory] = []
    nodes.node.create_subscription(JointTrajectory, "/ck_ctrl/joint_trajectory", trajs.append, 10)
    js_pub = nodes.node.create_publisher(JointState, "/joint_states", 10)
    pose_pub = nodes.node.create_publisher(PoseStamped, "/wm_planner/goal_pose", 10)
    goal_pub = nodes.node.create_publisher(JointState, "/wm_planner/goal_joints", 10)
    q_meas = np.array([0.2, 0.4, -0.3])
    nodes.node.create_timer(
        0.02,
        lambda: js_pub.publish(
            JointState(name=list(PLANAR.joint_names), position=q_meas.tolist(), velocity=[0.0] * 3)
        ),
    )
    nodes.spin_until(
        lambda: (
            bool(nodes.status) and nodes.status[-1]["input_ages_ms"]["joint_states"] is not None
        ),
        STARTUP_S,
        "the planner to see joint states",
    )
    for pub in (pose_pub, goal_pub):
        nodes.spin_until(
            lambda p=pub: p.get_subscription_count() > 0, 30.0, f"a subscriber on {pub.topic_name}"
        )
    # A reach checkpoint plans towards poses only: a joint goal is refused, not planned.
    goal_pub.publish(_joint_goal(np.array([1.0, -0.5, 0.8])))
    nodes.spin_until(
        lambda: "cannot plan towards a joints goal" in nodes.status[-1]["goal_status"],
        10.0,
        "the joint goal to be refused",
    )
    pose = PoseStamped()
    pose.header.frame_id = "world"
    pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.3, 0.1, 0.1
    pose_pub.publish(pose)
    nodes.spin_until(lambda: nodes.status[-1]["plans"] >= 5, 30.0, "plans for the pose goal")
    s = nodes.status[-1]
    assert s["goal"] == "pose", s
    assert s["mode"] == "planning", s
    assert s["plan_errors"] == 0, s
    assert s["cost"] is not None, s
    assert trajs, "no joint trajectory was published"
    assert len(trajs[-1].points) == 3  # horizon 0: the checkpoint planner's 3 steps
    for msg in trajs:
        assert _traj_ok(msg, None) is None, _traj_ok(msg, None)
    assert "planner MPPI(" in nodes.logs()  # the configured line names the planner


def test_goal_image_model_plans_from_the_camera(nodes: Nodes, tmp_path: Path) -> None:
    """A DINO-WM checkpoint (``model: goal_image``) plans from camera images towards a joint goal
    (rendered by the adapter) and an image goal; a camera that stops makes the node hold."""
    from wm_planning.cli import main as cli
    from wm_planning.envs.arm import ArmEnv

    data, ck = tmp_path / "data", tmp_path / "dino.pt"
    collect = ["collect", "env=planar-goal_reach", "policy=correlated", "episodes=2"]
    assert cli([*collect, f"out={data}", "pixels=true", "image_size=32"]) == 0
    train = ["train-visual", "model=dino_wm_conv", f"data={data}", "steps=2", "batch_size=2"]
    assert cli([*train, f"out={ck}"]) == 0
    params = {
        "robot": "planar",
        "model": "goal_image",
        "checkpoint": str(ck),
        "model_options": [
            "proprio_weight=1.0",
            "planner_options={population: 8, elites: 2, iterations: 1}",
        ],
        "planner": "",  # the adapter's: iCEM over 3 model steps (15 env steps)
        "planner_overrides": [],
        "horizon": 0,
        "replan_every": 5,
        "plan_deadline": 1.0,
        "max_input_age": 0.5,
        "status_rate": 5.0,
        "image_size": [32, 32],
        "camera_topic": "/cam/color",
        "controller": "gi_ctrl",
    }
    nodes.start("planner_node", {"wm_planner": {"ros__parameters": params}})
    trajs: list[JointTrajectory] = []
    nodes.node.create_subscription(JointTrajectory, "/gi_ctrl/joint_trajectory", trajs.append, 10)
    js_pub = nodes.node.create_publisher(JointState, "/joint_states", 10)
    cam_pub = nodes.node.create_publisher(Image, "/cam/color", 10)
    goal_pub = nodes.node.create_publisher(JointState, "/wm_planner/goal_joints", 10)
    image_pub = nodes.node.create_publisher(Image, "/wm_planner/goal_image", 10)
    q_meas = np.array([0.2, 0.4, -0.3])
    env = ArmEnv("planar", "goal_reach")
    env.set_joints(q_meas)
    frame = env.render(size=(64, 64))  # the adapter resizes to the model's 32x32
    env.set_joints(np.array([0.5, 0.1, 0.2]))
    goal_img = env.render(size=(64, 64))
    env.close()
    camera_on = [True]

    def publish() -> None:
        js_pub.publish(
            JointState(name=list(PLANAR.joint_names), position=q_meas.tolist(), velocity=[0.0] * 3)
        )
        if camera_on[0]:
            cam_pub.publish(
                Image(height=64, width=64, encoding="rgb8", step=192, data=frame.tobytes())
            )

    nodes.node.create_timer(0.04, publish)
    nodes.spin_until(
        lambda: (
            bool(nodes.status) and nodes.status[-1]["input_ages_ms"]["joint_states"] is not None
        ),
        STARTUP_S,
        "the planner to see joint states",
    )
    for pub in (goal_pub, image_pub):
        nodes.spin_until(
            lambda p=pub: p.get_subscription_count() > 0, 30.0, f"a subscriber on {pub.topic_name}"
        )
    goal_pub.publish(_joint_goal(np.array([1.0, -0.5, 0.8])))
    nodes.spin_until(lambda: nodes.status[-1]["plans"] >= 3, 60.0, "plans for the joint goal")
    s = nodes.status[-1]
    assert s["goal"] == "joints", s
    assert s["plan_errors"] == 0, s
    image_pub.publish(
        Image(height=64, width=64, encoding="rgb8", step=192, data=goal_img.tobytes())
    )
    nodes.spin_until(lambda: nodes.status[-1]["goal"] == "image", 30.0, "the image goal")
    plans = nodes.status[-1]["plans"]
    nodes.spin_until(lambda: nodes.status[-1]["plans"] >= plans + 3, 60.0, "image-goal plans")
    s = nodes.status[-1]
    assert s["mode"] == "planning", s
    assert s["plan_errors"] == 0, s
    assert trajs
    assert len(trajs[-1].points) == 15
    for msg in trajs:
        assert _traj_ok(msg, None) is None, _traj_ok(msg, None)
    camera_on[0] = False  # the camera goes silent: no planning from a stale picture
    nodes.spin_until(lambda: nodes.status[-1]["mode"] == "holding", 10.0, "a hold")
    assert "stale input: camera" in nodes.status[-1]["reason"], nodes.status[-1]

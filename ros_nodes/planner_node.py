"""Planner node: model-predictive control of an arm over ROS 2 (a lifecycle node).

Inputs ``/joint_states`` (matched by name) and an optional camera; goals on ``~/goal_joints``
(sensor_msgs/JointState naming every joint), ``~/goal_pose`` (geometry_msgs/PoseStamped: the
end-effector position in the world frame; orientation ignored) and ``~/goal_image``
(sensor_msgs/Image). Commands go to ``/<controller>/joint_trajectory`` or
``/<controller>/commands``; ``~/status`` reports JSON, ``~/imagined`` a rendering of where the
plan leads. Services ``~/enable`` (SetBool) and ``~/reset`` (Trigger). Topics and parameters:
``docs/ros.md``.

Threads: the executor thread receives inputs, runs the control tick (safety gate, deadline
watchdog, command streaming) and serves services; a dedicated planning thread runs the model and
planner, so a slow plan never blocks input handling or the hold-on-stale check.
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
import rclpy.executors
import torch
from geometry_msgs.msg import PoseStamped
from rclpy.exceptions import ParameterUninitializedException
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros_nodes.conversions import (
    MAX_PIXELS,
    InputError,
    finite_vector,
    full_joint_vector,
    image_to_rgb,
    read_joint_state,
    resize_rgb,
    rgb_to_image_fields,
    seconds_to_duration,
)
from ros_nodes.models import Goal, Observation, PlanningModel, make_model
from ros_nodes.runtime import parse_overrides, shut_down, spin_until_shutdown
from ros_nodes.safety import Gate, Limits, ThrottledLog, TimedPlan

COMMAND_INTERFACES = ("joint_trajectory", "forward_command")

#: parameter -> default (the type follows the default); docs/ros.md describes each
PARAMETERS: dict[str, Any] = {
    "robot": "planar",
    "model": "mujoco",
    "checkpoint": "",
    "model_options": [""],
    "task": "goal_reach",
    "pose_task": "reach",
    "planner": "cem",
    "planner_overrides": ["population=32", "elites=6", "iterations=3"],
    "horizon": 10,
    "seed": 0,
    "control_rate": 25.0,
    "replan_every": 2,
    "plan_deadline": 0.0,
    "command_interface": "joint_trajectory",
    "controller": "arm_controller",
    "trajectory_points": 0,
    "goal_source": "topics",
    "goal_joints": [0.0],
    "max_input_age": 0.2,
    "camera_topic": "/scene/color",
    "camera_info_topic": "",
    "camera": "",
    "image_size": [48, 64],
    "max_image_pixels": 1920 * 1080,
    "torch_threads": 1,
    "model_threads": 1,
    "velocity_scale": 1.0,
    "status_rate": 2.0,
    "imagined_rate": 1.0,
    "world_frame": "world",
    "autostart": True,
}


@dataclass
class _Job:
    """One planning request: a snapshot of the inputs and when it is due."""

    gen: int
    t: float  # monotonic time of the snapshot
    t_start: float  # when the plan takes over: the deadline (the previous plan runs until then)
    t_input: float  # receipt time of the input the plan starts from (joint state or image)
    obs: Observation
    goal: Goal
    deadline: float
    missed: bool = False


class PlannerNode(LifecycleNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("wm_planner", **kwargs)
        for name, default in PARAMETERS.items():
            self.declare_parameter(name, default)
        self._log = ThrottledLog(lambda m: self.get_logger().warning(m), period=5.0)
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=1)
        self.model: PlanningModel | None = None
        self._entities: list[Any] = []
        self._goal: Goal | None = None
        self._running = False

    # == lifecycle ====================================================================================
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as e:  # bad parameters: a clear message and a failed transition
            self.get_logger().error(f"configure failed: {type(e).__name__}: {e}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        with self._lock:
            self._active = True
            self._enter_hold("activated: waiting for inputs and a goal")
        self._running = True
        self._thread = threading.Thread(target=self._plan_loop, name="wm_planner", daemon=True)
        self._thread.start()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_thread()
        with self._lock:
            self._active = False
            self._enter_hold("deactivated")
            self._publish_hold()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._teardown()
        return TransitionCallbackReturn.SUCCESS

    # == configuration ==================================================================================
    def _param(self, name: str) -> Any:
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            # A params file's empty list carries no type, so rclpy leaves the parameter unset.
            if isinstance(PARAMETERS[name], list):
                return []
            raise

    def _configure(self) -> None:
        import robots
        from wm_planning import planners
        from wm_planning.config import load_group
        from wm_planning.control import Controller

        p = {name: self._param(name) for name in PARAMETERS}
        self.params = p
        if p["command_interface"] not in COMMAND_INTERFACES:
            raise ValueError(
                f"command_interface must be one of {COMMAND_INTERFACES}, got {p['command_interface']!r}"
            )
        if p["goal_source"] not in ("topics", "parameter"):
            raise ValueError(
                f"goal_source must be 'topics' or 'parameter', got {p['goal_source']!r}"
            )
        for name in ("control_rate", "max_input_age", "status_rate"):
            if not (math.isfinite(p[name]) and p[name] > 0):
                raise ValueError(f"{name} must be > 0, got {p[name]}")
        if int(p["torch_threads"]) < 1:
            raise ValueError(f"torch_threads must be >= 1, got {p['torch_threads']}")
        size = list(p["image_size"])
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"image_size must be [height, width], got {size}")
        # Deliberate: extra torch threads fight the simulator and input handling for 2 cores.
        torch.set_num_threads(int(p["torch_threads"]))

        self.robot = robots.get(p["robot"])
        self.n = self.robot.n_joints
        self.limits = Limits.from_robot(self.robot, float(p["velocity_scale"]))
        self.gate = Gate(float(p["max_input_age"]))
        self.model = make_model(
            p["model"],
            robot=p["robot"],
            task=p["task"],
            pose_task=p["pose_task"],
            checkpoint=p["checkpoint"],
            camera=p["camera"],
            image_size=(int(size[0]), int(size[1])),
            threads=int(p["model_threads"]),
            options=parse_overrides([o for o in p["model_options"] if o], "model_options"),
        )
        overrides = parse_overrides(p["planner_overrides"], "planner_overrides")
        if p["planner"]:
            cfg = load_group("planner", p["planner"])
        else:
            # Empty: the planner the model comes with (a checkpoint's training planner).
            choice = self.model.default_planner()
            if choice is None:
                raise ValueError(
                    f"planner is empty (the model's own) but model {p['model']!r} has none; "
                    "name one, e.g. cem"
                )
            cfg = {**load_group("planner", choice.name), **choice.options}
        cfg.update(overrides)
        # horizon 0: the planner config's own (e.g. TD-MPC2's 3 steps)
        self.horizon = int(p["horizon"]) or int(cfg.get("horizon") or 0)
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1 (or 0 for the planner's), got {p['horizon']}")
        if self.horizon % self.model.horizon_multiple:
            raise ValueError(
                f"horizon {self.horizon} must be a multiple of {self.model.horizon_multiple} "
                f"(model {p['model']!r} predicts {self.model.horizon_multiple} env steps at a time)"
            )
        self.planner = planners.from_config(
            cfg,
            horizon=self.horizon,
            action_low=self.model.action_low,
            action_high=self.model.action_high,
        )
        self.period = 1.0 / float(p["control_rate"])
        self.replan_every = int(p["replan_every"])
        if self.replan_every < 1:
            raise ValueError(f"replan_every must be >= 1, got {self.replan_every}")
        self.deadline = float(p["plan_deadline"]) or self.replan_every * self.period
        self.controller = Controller(
            self.planner,
            generator=torch.Generator().manual_seed(int(p["seed"])),
            replan_every=min(self.replan_every, self.horizon),
        )
        n_points = int(p["trajectory_points"])
        self.n_points = n_points if n_points > 0 else self.horizon
        self.joint_index = {name: i for i, name in enumerate(self.robot.joint_names)}
        self._init_state()
        if p["goal_source"] == "parameter":
            self._goal = Goal(
                "joints", self._checked_joint_goal(np.asarray(p["goal_joints"], dtype=float))
            )
        self._create_interfaces(p)
        self.get_logger().info(
            f"configured: {self.robot.name}, model {p['model']}, planner {self.planner!r}, "
            f"{p['command_interface']} -> /{p['controller']}, tick {1 / self.period:g} Hz, "
            f"replan every {self.replan_every}, deadline {self.deadline * 1e3:.0f} ms"
        )

    def _init_state(self) -> None:
        n = self.n
        self._active = False
        self._enabled = True
        self._q = np.zeros(n)
        self._qd = np.zeros(n)
        self._seen = np.full(n, -math.inf)  # receipt time per joint
        self._t_js = -math.inf
        self._image: np.ndarray | None = None
        self._t_img = -math.inf
        self._camera_info: dict[str, Any] | None = None
        self._goal = None
        self._hold: np.ndarray | None = None  # position held while not planning
        self._plan: TimedPlan | None = None  # commanded plan (monotonic times)
        self._plan_from = np.zeros(n)  # commanded position at the plan's t0
        self._last_cmd: np.ndarray | None = None
        self._t_last_cmd = -math.inf
        self._gen = 0
        self._job: _Job | None = None
        self._ticks_since_plan = 0
        self._reset_controller = True
        self._ctrl_t0: float | None = None  # t0 of the controller's last plan
        self._mode = "holding"
        self._reason = "configured"
        self._goal_status = ""
        self._stats: dict[str, Any] = {
            "plans": 0,
            "deadline_misses": 0,
            "commands": 0,
            "commands_clamped": 0,
            "plan_errors": 0,
        }
        self._latency: deque[float] = deque(maxlen=2000)
        self._plan_times: deque[float] = deque(maxlen=2000)
        self._tick_times: deque[float] = deque(maxlen=200)
        self._plan_pub_times: deque[float] = deque(maxlen=200)
        self._last_cost = math.nan
        self._last_imagined = -math.inf

    def _create_interfaces(self, p: dict[str, Any]) -> None:
        ctrl = p["controller"]
        if p["command_interface"] == "joint_trajectory":
            self.cmd_pub = self.create_publisher(JointTrajectory, f"/{ctrl}/joint_trajectory", 10)
        else:
            self.cmd_pub = self.create_publisher(Float64MultiArray, f"/{ctrl}/commands", 10)
        self.status_pub = self.create_publisher(String, "~/status", 10)
        self.imagined_pub = self.create_publisher(Image, "~/imagined", qos_profile_sensor_data)
        subs = [
            self.create_subscription(
                JointState, "/joint_states", self._on_joint_state, qos_profile_sensor_data
            ),
            self.create_subscription(JointState, "~/goal_joints", self._on_goal_joints, 10),
            self.create_subscription(PoseStamped, "~/goal_pose", self._on_goal_pose, 10),
            self.create_subscription(Image, "~/goal_image", self._on_goal_image, 10),
        ]
        if p["camera_topic"]:
            subs.append(
                self.create_subscription(
                    Image, p["camera_topic"], self._on_image, qos_profile_sensor_data
                )
            )
        if p["camera_info_topic"]:
            subs.append(
                self.create_subscription(
                    CameraInfo, p["camera_info_topic"], self._on_camera_info, 10
                )
            )
        self._entities = [
            self.cmd_pub,
            self.status_pub,
            self.imagined_pub,
            *subs,
            self.create_service(SetBool, "~/enable", self._on_enable),
            self.create_service(Trigger, "~/reset", self._on_reset),
            self.create_timer(self.period, self._tick),
            self.create_timer(1.0 / float(p["status_rate"]), self._publish_status),
        ]

    def _teardown(self) -> None:
        self._stop_thread()
        destroyers: dict[str, Callable[[Any], Any]] = {
            "Publisher": self.destroy_publisher,
            "Subscription": self.destroy_subscription,
            "Service": self.destroy_service,
            "Timer": self.destroy_timer,
        }
        for e in self._entities:
            destroy = destroyers.get(type(e).__name__)
            if destroy is not None:
                destroy(e)
        self._entities = []
        if self.model is not None:
            self.model.close()
            self.model = None

    def _stop_thread(self) -> None:
        self._running = False
        if self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._jobs.put_nowait(None)
            self._thread.join(timeout=10.0)
            self._thread = None
        # A stop during a plan leaves the sentinel (or a job) queued; the next activation's
        # thread would read it and exit at once, so the node would never plan again.
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        with self._lock:
            self._job = None

    # == input callbacks (executor thread) ===============================================================
    def _guard(self, what: str, fn: Any, msg: Any) -> None:
        """Run a callback body; bad input is logged (throttled) and dropped, never raised."""
        try:
            fn(msg)
        except InputError as e:
            self._log(f"{what}: {e.key}", f"dropped {what}: {e}")
        except Exception as e:  # a bug or an exotic message must not take the node down
            self._log(f"{what}: error", f"dropped {what}: {type(e).__name__}: {e}")

    def _on_joint_state(self, msg: JointState) -> None:
        self._guard("joint_states", self._joint_state, msg)

    def _joint_state(self, msg: JointState) -> None:
        now = time.monotonic()
        r = read_joint_state(msg, self.robot.joint_names)
        if r.unknown:
            # A real /joint_states may also carry gripper joints: ignore them, say so once.
            self._log(
                "joint_unknown",
                f"/joint_states: ignoring joints {list(r.unknown)} this robot does not have",
            )
        with self._lock:
            self._q[r.index] = r.position
            if r.velocity is not None:
                self._qd[r.index] = r.velocity
            self._seen[r.index] = now
            self._t_js = now

    def _on_image(self, msg: Image) -> None:
        self._guard("camera image", self._camera_image, msg)

    def _to_model_image(self, msg: Image, what: str) -> np.ndarray:
        assert self.model is not None
        img = image_to_rgb(msg, max_pixels=self._max_pixels())
        h, w = self.model.image_size
        if abs(img.shape[1] / img.shape[0] - w / h) > 0.05 * w / h:
            # Resizing distorts the picture: the model renders (or was trained) at its own aspect.
            self._log(
                f"{what}: aspect",
                f"{what} is {img.shape[1]}x{img.shape[0]} but image_size is {w}x{h}; "
                "set image_size to the camera's aspect ratio",
            )
        return resize_rgb(img, (h, w))

    def _camera_image(self, msg: Image) -> None:
        img = self._to_model_image(msg, "camera image")
        with self._lock:
            self._image, self._t_img = img, time.monotonic()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        with self._lock:
            self._camera_info = {
                "width": int(msg.width),
                "height": int(msg.height),
                "k": list(msg.k),
            }

    def _max_pixels(self) -> int:
        return min(int(self.params["max_image_pixels"]), MAX_PIXELS)

    def _checked_joint_goal(self, q: np.ndarray) -> np.ndarray:
        q = finite_vector(q, self.n, "goal_joints")
        lo, hi = self.limits.lower, self.limits.upper
        if np.any(q < lo) or np.any(q > hi):
            raise InputError(
                "goal_joints_limits",
                f"goal_joints {q.tolist()} outside the joint limits [{lo.tolist()}, {hi.tolist()}]",
            )
        return q

    def _set_goal(self, goal: Goal) -> None:
        assert self.model is not None
        with self._lock:
            if goal.kind not in self.model.goal_kinds:
                self._goal = None
                self._goal_status = (
                    f"goal_{goal.kind} needs a model that predicts frames/latents"
                    if goal.kind == "image"
                    else f"model {self.params['model']!r} cannot plan towards a {goal.kind} goal"
                )
                self._log(f"goal_{goal.kind}_unsupported", self._goal_status)
                return
            self._goal, self._goal_status = goal, ""
            self._reset_controller = True  # a new goal: the old warm start points elsewhere
        self.get_logger().info(
            f"new {goal.kind} goal" + (f": {goal.value.tolist()}" if goal.kind != "image" else "")
        )

    def _on_goal_joints(self, msg: JointState) -> None:
        def body(m: JointState) -> None:
            q = full_joint_vector(m, self.robot.joint_names, "goal_joints")
            self._set_goal(Goal("joints", self._checked_joint_goal(q)))

        self._guard("goal_joints", body, msg)

    def _on_goal_pose(self, msg: PoseStamped) -> None:
        def body(m: PoseStamped) -> None:
            frame = m.header.frame_id
            if frame not in ("", self.params["world_frame"]):
                raise InputError(
                    "goal_pose_frame",
                    f"goal_pose frame {frame!r} is not the world frame {self.params['world_frame']!r} (no tf here)",
                )
            p = m.pose.position
            self._set_goal(Goal("pose", finite_vector([p.x, p.y, p.z], 3, "goal_pose")))

        self._guard("goal_pose", body, msg)

    def _on_goal_image(self, msg: Image) -> None:
        def body(m: Image) -> None:
            self._set_goal(Goal("image", self._to_model_image(m, "goal_image")))

        self._guard("goal_image", body, msg)

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._lock:
            self._enabled = bool(request.data)
        response.success = True
        response.message = "enabled" if request.data else "disabled: holding position"
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            self._goal = None
            self._goal_status = ""
            self._enter_hold("reset")
            self._publish_hold()
        response.success = True
        response.message = "goal and plan cleared; holding position"
        return response

    # == control tick (executor thread) ==================================================================
    def _ages(self, now: float) -> dict[str, float | None]:
        seen = float(np.min(self._seen))
        ages: dict[str, float | None] = {"joint_states": None if math.isinf(seen) else now - seen}
        assert self.model is not None
        if self.model.needs_image:
            ages["camera"] = None if math.isinf(self._t_img) else now - self._t_img
        return ages

    def _tick(self) -> None:
        try:
            with self._lock:
                self._tick_locked()
        except Exception as e:  # never let a tick exception stop the timer
            self._log("tick_error", f"control tick failed: {type(e).__name__}: {e}")

    def _tick_locked(self) -> None:
        if not self._active:
            return
        now = time.monotonic()
        self._tick_times.append(now)
        decision = self.gate.decide(
            enabled=self._enabled, has_goal=self._goal is not None, ages=self._ages(now)
        )
        if not decision.plan:
            reason = (
                self._goal_status
                if self._goal_status and decision.reason == "no goal"
                else decision.reason
            )
            if self._mode != "holding":
                self._enter_hold(reason)
            self._reason = reason
            self._publish_hold()
            return
        if self._mode == "holding":
            self._hold = None
        self._mode, self._reason = "planning", "ok"
        job = self._job
        if job is not None and not job.missed and now > job.deadline:
            # Late plan: it will be dropped when it arrives; keep executing the previous plan.
            job.missed = True
            self._stats["deadline_misses"] += 1
            shifted = self._plan.shifted(now) if self._plan is not None else None
            if shifted is not None and self.params["command_interface"] == "joint_trajectory":
                self._publish_plan(shifted, now, self._commanded(now))
        self._ticks_since_plan += 1
        if job is None and (self._plan is None or self._ticks_since_plan >= self.replan_every):
            self._submit(now)
        if self.params["command_interface"] == "forward_command":
            if self._plan is not None:
                self._publish_position(self._plan.position_at(now, self._plan_from), now)
            elif self._last_cmd is None:
                self._publish_position(self._q.copy(), now)

    def _commanded(self, t: float) -> np.ndarray:
        """Where the commands put the arm at time ``t`` (now or ahead along the current plan)."""
        if self._plan is not None:
            return self._plan.position_at(t, self._plan_from)
        if self._hold is not None:
            return self._hold.copy()
        return self._q.copy()

    def _submit(self, now: float) -> None:
        assert self._goal is not None
        # Delay compensation: the plan starts at its deadline from the position the current
        # plan (or the hold) commands then, so taking over is seamless.
        t_start = now + self.deadline
        obs = Observation(
            q=self._q.copy(),
            qd=self._qd.copy(),
            q_ref=self._commanded(t_start),
            image=None if self._image is None else self._image.copy(),
        )
        # Latency is measured from the newest input the model plans from (camera for pixel models).
        t_input = self._t_img if self.model is not None and self.model.needs_image else self._t_js
        job = _Job(self._gen, now, t_start, t_input, obs, self._goal, t_start)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return
        self._job = job
        self._ticks_since_plan = 0

    def _enter_hold(self, reason: str) -> None:
        """Stop planning: drop the plan (never replayed) and hold the measured position."""
        self._mode, self._reason = "holding", reason
        self._plan = None
        self._gen += 1  # results of plans in flight are discarded
        self._reset_controller = True
        self._hold = self._q.copy() if np.all(np.isfinite(self._seen)) else None

    # == publishing (callers hold the lock) ==============================================================
    def _publish_hold(self) -> None:
        if self._hold is None:
            return  # nothing measured yet: command nothing
        q, _ = self.limits.clamp(self._hold, self._hold, self.period)
        self._hold = q
        now = time.monotonic()
        if self.params["command_interface"] == "joint_trajectory":
            self._publish_trajectory(np.array([self.period]), q[None], now)
        else:
            self._send_position(q, now)

    def _publish_plan(self, plan: TimedPlan, now: float, start: np.ndarray) -> None:
        """Send the points of ``plan`` still ahead of ``now`` (stamp zero: start now), clamped
        relative to ``start``, the position commanded at ``now``."""
        ahead = plan.shifted(now)
        if ahead is None:
            return
        k = min(self.n_points, ahead.times.size)
        times, pts = ahead.times[:k], ahead.points[:k]
        pts, clamped = self.limits.clamp_trajectory(
            pts, start, np.diff(np.concatenate([[0.0], times]))
        )
        self._stats["commands_clamped"] += clamped
        self._publish_trajectory(times, pts, now)

    def _publish_trajectory(self, times: np.ndarray, pts: np.ndarray, now: float) -> None:
        msg = JointTrajectory()
        msg.joint_names = list(self.robot.joint_names)
        for t, q in zip(times, pts, strict=True):
            pt = JointTrajectoryPoint()
            pt.positions = [float(x) for x in q]
            sec, nsec = seconds_to_duration(float(t))
            pt.time_from_start.sec, pt.time_from_start.nanosec = sec, nsec
            msg.points.append(pt)
        self._send(self.cmd_pub, msg)
        self._stats["commands"] += 1
        self._last_cmd, self._t_last_cmd = pts[0].copy(), now

    def _send(self, pub: Any, msg: Any) -> None:
        """Publish; at shutdown the context goes away under the planning thread, so a failed
        publish is logged (when the context is still up) instead of raised."""
        try:
            pub.publish(msg)
        except Exception as e:
            if self.context.ok():
                self._log("publish_error", f"publish on {pub.topic_name} failed: {e}")

    def _publish_position(self, q: np.ndarray, now: float) -> None:
        prev = self._last_cmd if self._last_cmd is not None else self._q
        dt = min(max(now - self._t_last_cmd, self.period), 2 * self.period)
        q, clamped = self.limits.clamp(q, prev, dt)
        self._stats["commands_clamped"] += clamped
        self._send_position(q, now)

    def _send_position(self, q: np.ndarray, now: float) -> None:
        self._send(self.cmd_pub, Float64MultiArray(data=[float(x) for x in q]))
        self._stats["commands"] += 1
        self._last_cmd, self._t_last_cmd = q.copy(), now

    # == planning thread ===================================================================================
    def _plan_loop(self) -> None:
        while self._running:
            try:
                job = self._jobs.get(timeout=0.2)
            except queue.Empty:
                continue
            if job is None:
                break
            try:
                self._plan_job(job)
            except Exception as e:  # e.g. a model error for this goal: hold, report, keep serving
                with self._lock:
                    self._stats["plan_errors"] += 1
                    self._job = None
                    if job.gen == self._gen:
                        self._enter_hold(f"plan failed: {type(e).__name__}: {e}")
                        self._publish_hold()
                self._log("plan_error", f"planning failed: {type(e).__name__}: {e}")

    def _plan_job(self, job: _Job) -> None:
        assert self.model is not None
        with self._lock:
            reset = self._reset_controller
            self._reset_controller = False
        if reset or self._ctrl_t0 is None:
            self.controller.reset()
        else:
            # Warm start: the controller's last plan shifted by the steps elapsed since it began.
            self.controller.skip(max(0, round((job.t_start - self._ctrl_t0) / self.model.dt)))
        objective = self.model.objective(job.obs, job.goal)
        prior = self.model.prior(job.obs, job.goal, self.horizon, self.controller.generator)
        result = self.controller.replan(objective, prior)
        self._ctrl_t0 = job.t_start
        actions = result.actions.detach().cpu().numpy()
        points = self.model.commands(job.obs.q_ref, actions)
        times = self.model.dt * np.arange(1, points.shape[0] + 1)
        points, clamped = self.limits.clamp_trajectory(
            points, job.obs.q_ref, np.full(times.size, self.model.dt)
        )
        with self._lock:
            self._job = None
            self._plan_times.append(float(self.controller.plan_time_s or 0.0))
            if job.gen != self._gen or job.missed or self._mode != "planning":
                return  # late or superseded: the shifted previous plan stays in force
            now = time.monotonic()
            self._stats["plans"] += 1
            self._stats["commands_clamped"] += clamped
            self._last_cost = float(result.cost)
            start = self._commanded(now)  # from the plan being replaced
            self._plan = self._splice(now, job.t_start, job.obs.q_ref, times, points)
            self._plan_from = start
            if self.params["command_interface"] == "joint_trajectory":
                self._publish_plan(self._plan, now, start)
            else:
                self._publish_position(self._plan.position_at(now, self._plan_from), now)
            self._latency.append(time.monotonic() - job.t_input)
            self._plan_pub_times.append(now)
        self._maybe_imagine(job, actions)

    def _splice(
        self, now: float, t_start: float, q_start: np.ndarray, times: np.ndarray, points: np.ndarray
    ) -> TimedPlan:
        """The commanded plan from ``now``: the current plan's points until ``t_start`` (or a
        hold), ``q_start`` at ``t_start``, then the new points at ``t_start + times``."""
        abs_t = [t_start + times]
        pts = [points]
        if t_start > now + 1e-6:
            head = self._plan.shifted(now) if self._plan is not None else None
            if head is not None:
                keep = head.t0 + head.times < t_start - 1e-6
                abs_t.insert(0, head.t0 + head.times[keep])
                pts.insert(0, head.points[keep])
            abs_t.insert(-1, np.array([t_start]))
            pts.insert(-1, np.asarray(q_start)[None])
        merged = TimedPlan(now - 1.0, np.concatenate(abs_t) - (now - 1.0), np.vstack(pts))
        # Re-base at ``now`` (drops points already in the past if the plan came late).
        shifted = merged.shifted(now)
        assert shifted is not None  # the new points lie after t_start + dt > now
        return shifted

    def _has_listeners(self) -> bool:
        try:
            return self.imagined_pub.get_subscription_count() > 0
        except Exception:  # at shutdown the context goes away under the planning thread
            if self.context.ok():
                raise
            return False

    def _maybe_imagine(self, job: _Job, actions: np.ndarray) -> None:
        assert self.model is not None
        rate = float(self.params["imagined_rate"])
        now = time.monotonic()
        if rate <= 0 or now - self._last_imagined < 1.0 / rate or not self._has_listeners():
            return
        self._last_imagined = now
        img = self.model.imagine(job.obs, job.goal, actions)
        if img is None:
            return
        f = rgb_to_image_fields(np.ascontiguousarray(img))
        msg = Image(height=f.height, width=f.width, encoding=f.encoding, step=f.step, data=f.data)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params["camera"] or self.robot.cameras[0]
        self._send(self.imagined_pub, msg)

    # == status ==============================================================================================
    def status(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            ages = self._ages(now) if self.model is not None else {}
            if self.params["camera_topic"]:
                ages.setdefault("camera", None if math.isinf(self._t_img) else now - self._t_img)

            def pct(xs: deque[float], q: float) -> float | None:
                return round(float(np.percentile(np.asarray(xs), q)) * 1e3, 2) if xs else None

            def rate(ts: deque[float]) -> float | None:
                recent = [t for t in ts if now - t < 5.0]
                return (
                    round((len(recent) - 1) / (recent[-1] - recent[0]), 2)
                    if len(recent) > 2
                    else None
                )

            return {
                "mode": self._mode,
                "reason": self._reason,
                "enabled": self._enabled,
                "goal": None if self._goal is None else self._goal.kind,
                "goal_status": self._goal_status,
                "plan_time_ms": pct(self._plan_times, 50) if self._plan_times else None,
                "last_plan_time_ms": round(self._plan_times[-1] * 1e3, 2)
                if self._plan_times
                else None,
                "cost": None if math.isnan(self._last_cost) else round(self._last_cost, 6),
                "input_ages_ms": {
                    k: None if v is None else round(v * 1e3, 1) for k, v in ages.items()
                },
                "latency_ms": {
                    "p50": pct(self._latency, 50),
                    "p99": pct(self._latency, 99),
                    "n": len(self._latency),
                },
                "tick_rate_hz": rate(self._tick_times),
                "plan_rate_hz": rate(self._plan_pub_times),
                "dropped_inputs": dict(self._log.counts),
                "camera_info": self._camera_info,
                **self._stats,
            }

    def _publish_status(self) -> None:
        try:
            self._send(self.status_pub, String(data=json.dumps(self.status())))
        except Exception as e:
            self._log("status_error", f"status failed: {type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=sys.argv if argv is None else argv)
    node = PlannerNode()
    code = 0
    try:
        if node.get_parameter("autostart").value:
            node.trigger_configure()
            if node.model is None:
                code = 2  # configure failed; the reason is in the log
            else:
                node.trigger_activate()
        if code == 0:
            spin_until_shutdown(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        shut_down(node, node._teardown)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

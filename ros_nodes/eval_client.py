"""Episode driver of ``wm-plan eval path=ros`` (started by it beside the arm and planner nodes).

Episode ``i`` (seed ``seed + i``), through the deployed ROS path:

1. disable, then deactivate the planner (lifecycle), so nothing commands the arm while the
   world resets;
2. set the arm node's ``episode_seed``/``episode_steps`` parameters and call ``~/reset_world``:
   the arm restarts from that seed's start configuration, goal and physics sample, which must
   equal this client's own ``reset(seed)`` of the evaluation env (the in-process harness's env,
   :func:`wm_planning.eval.policies.make_eval_env`), else the run stops: the nodes and the eval
   config describe different tasks;
3. once ``/joint_states`` shows the start, clear the planner (``~/reset``, it then holds the
   start), send the goal (``~/goal_joints`` for a ``goal_reach`` task, ``~/goal_pose`` with the
   end-effector target for ``reach``, ``~/goal_image`` = the env's goal rendering for pixel
   checkpoints) and wait until ``~/status`` acknowledges it;
4. ``~/start_episode`` on the arm and activate the planner: the arm scores the next ``steps``
   control periods of simulated time with the task's own definition and reports on
   ``~/episode``; meanwhile plan times are sampled from ``~/status`` (once per new plan seen);
5. plans, deadline misses and clamped commands are the differences of the planner's counters
   over the episode; latency p50/p99 are the planner's own figures at the end of it.

Usage: ``python -m ros_nodes.eval_client SPEC.json`` where SPEC holds ``env``, ``goal`` (joints,
pose or image; ``image_size`` and ``camera`` for image goals), ``randomization`` (knob values), ``seed``, ``episodes``, ``steps`` (null: the env's episode
length), ``out`` (JSON lines, one per episode, appended as they finish), ``real_time_factor``
and ``startup_timeout``. Exit status 0 when every episode ran, 1 with a message otherwise.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

ARM, PLANNER = "/mujoco_arm", "/wm_planner"
START_TOL = 0.01  # rad: the arm is at the episode's start (it holds it exactly until commanded)


class EvalError(RuntimeError):
    """An episode could not be run (a node missing, a timeout, a mismatched task)."""


class EvalClient:
    def __init__(self, spec: dict[str, Any]) -> None:
        from wm_planning.envs.randomization import RandomizationConfig
        from wm_planning.eval.policies import make_eval_env

        self.spec = spec
        self.env = make_eval_env(
            str(spec["env"]), RandomizationConfig.from_dict(spec["randomization"])
        )
        arm_env = self.env.env
        self.kind = str(spec["goal"])
        self.joint_names = list(arm_env.robot.joint_names)
        self.steps = int(spec["steps"] or self.env.spec.episode_length)
        self.period = float(self.env.spec.control_dt)
        self.rtf = float(spec["real_time_factor"]) or 1.0  # 0 (as fast as possible): >= real time

        self.node = rclpy.create_node("wm_eval_client")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.status: dict[str, Any] = {}
        self.status_t = -math.inf
        self.on_status: Callable[[dict[str, Any]], None] | None = None
        self.reports: list[dict[str, Any]] = []
        self.q: np.ndarray | None = None
        self.q_t = -math.inf
        n = self.node
        n.create_subscription(String, f"{PLANNER}/status", self._status, 10)
        latched = QoSProfile(depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n.create_subscription(
            String, f"{ARM}/episode", lambda m: self.reports.append(json.loads(m.data)), latched
        )
        n.create_subscription(JointState, "/joint_states", self._joints, 10)
        self.goal_pubs = {
            "joints": n.create_publisher(JointState, f"{PLANNER}/goal_joints", 10),
            "pose": n.create_publisher(PoseStamped, f"{PLANNER}/goal_pose", 10),
            "image": n.create_publisher(Image, f"{PLANNER}/goal_image", 10),
        }
        self.goal_msgs: dict[str, Callable[[np.ndarray], Any]] = {
            "joints": self._joints_goal,
            "pose": self._pose_goal,
            "image": self._image_goal,
        }
        self.srv = {
            "arm_params": n.create_client(SetParameters, f"{ARM}/set_parameters"),
            "reset_world": n.create_client(Trigger, f"{ARM}/reset_world"),
            "start_episode": n.create_client(Trigger, f"{ARM}/start_episode"),
            "planner_reset": n.create_client(Trigger, f"{PLANNER}/reset"),
            "enable": n.create_client(SetBool, f"{PLANNER}/enable"),
            "change_state": n.create_client(ChangeState, f"{PLANNER}/change_state"),
            "get_state": n.create_client(GetState, f"{PLANNER}/get_state"),
        }

    # -- plumbing ---------------------------------------------------------------------------------
    def _status(self, msg: String) -> None:
        self.status, self.status_t = json.loads(msg.data), time.monotonic()
        if self.on_status is not None:
            self.on_status(self.status)

    def _joints(self, msg: JointState) -> None:
        pos = dict(zip(msg.name, msg.position, strict=False))
        if all(j in pos for j in self.joint_names):
            self.q, self.q_t = np.array([pos[j] for j in self.joint_names]), time.monotonic()

    def spin_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise EvalError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.01)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def call(self, name: str, request: Any, timeout: float = 30.0) -> Any:
        future = self.srv[name].call_async(request)
        self.spin_until(future.done, timeout, f"the reply of {name}")
        return future.result()

    def trigger(self, name: str) -> str:
        res = self.call(name, Trigger.Request())
        if not res.success:
            raise EvalError(f"{name} failed: {res.message}")
        return str(res.message)

    def transition(self, transition: int) -> None:
        res = self.call("change_state", ChangeState.Request(transition=Transition(id=transition)))
        if not res.success:
            raise EvalError(f"planner lifecycle transition {transition} failed")

    def planner_active(self) -> bool:
        res = self.call("get_state", GetState.Request())
        return bool(res.current_state.id == State.PRIMARY_STATE_ACTIVE)

    def enable(self, on: bool) -> None:
        if not self.call("enable", SetBool.Request(data=on)).success:
            raise EvalError(f"planner ~/enable {on} failed")

    def stop_planner(self) -> None:
        """Deactivate the planner, so nothing commands the arm (it holds position; a plan in
        flight is finished and dropped by the node)."""
        if self.planner_active():
            self.transition(Transition.TRANSITION_DEACTIVATE)
        self.enable(True)  # planning enabled at the next activation

    def wait_ready(self) -> None:
        timeout = float(self.spec["startup_timeout"])
        for name, client in self.srv.items():
            if not client.wait_for_service(timeout_sec=timeout):
                raise EvalError(f"service {client.srv_name} ({name}) never appeared")
        # The planner is up and hears the arm (as ros_nodes/bench.py waits).
        self.spin_until(
            lambda: self.status.get("input_ages_ms", {}).get("joint_states") is not None,
            timeout,
            "the planner's status with joint states",
        )

    # -- one episode --------------------------------------------------------------------------------
    def _reset_world(self, seed: int) -> dict[str, Any]:
        params = [
            Parameter("episode_seed", value=seed).to_parameter_msg(),
            Parameter("episode_steps", value=self.steps).to_parameter_msg(),
        ]
        res = self.call("arm_params", SetParameters.Request(parameters=params))
        bad = [r.reason for r in res.results if not r.successful]
        if bad:
            raise EvalError(f"setting the arm's episode parameters failed: {bad}")
        seen = len(self.reports)
        self.trigger("reset_world")
        self.spin_until(
            lambda: any(r["phase"] == "reset" and r["seed"] == seed for r in self.reports[seen:]),
            10.0,
            f"the arm's report of the reset to seed {seed}",
        )
        return next(r for r in self.reports[seen:] if r["phase"] == "reset" and r["seed"] == seed)

    def _at_start(self, start: np.ndarray, since: float) -> bool:
        q = self.q
        return self.q_t > since and q is not None and float(np.max(np.abs(q - start))) < START_TOL

    def _joints_goal(self, goal: np.ndarray) -> JointState:
        return JointState(name=self.joint_names, position=[float(x) for x in goal])

    def _pose_goal(self, goal: np.ndarray) -> PoseStamped:
        msg = PoseStamped()  # frame "" = the planner's world frame
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(x) for x in goal)
        return msg

    def _image_goal(self, goal: np.ndarray) -> Image:
        # The env's own goal rendering (goal_image) for this episode, at the node's image size.
        h, w = (int(x) for x in self.spec["image_size"])
        img = np.ascontiguousarray(self.env.goal_image(self.spec["camera"] or None, (h, w)))
        return Image(height=h, width=w, encoding="rgb8", step=3 * w, data=img.tobytes())

    def _send_goal(self, goal: np.ndarray) -> None:
        self.goal_pubs[self.kind].publish(self.goal_msgs[self.kind](goal))

    def episode(self, i: int) -> dict[str, Any]:
        seed = int(self.spec["seed"]) + i
        # The in-process harness's episode for this seed: start, goal, physics sample.
        self.env.reset(seed)
        arm_env = self.env.env
        goal = np.array(arm_env.target, dtype=float)
        start = np.array(arm_env.q_ref, dtype=float)  # the servo target = q0 after a reset

        self.stop_planner()
        self.spin_for(0.1)  # the planner's last hold command lands before the reset
        for _ in range(3):
            t_reset = time.monotonic()
            report = self._reset_world(seed)
            if not (
                np.allclose(report["target"], goal, atol=1e-9)
                and np.allclose(report["start"], start, atol=1e-9)
            ):
                raise EvalError(
                    f"seed {seed}: the arm node's episode (start {report['start']}, goal "
                    f"{report['target']}, task {report['task']}) differs from {self.spec['env']}'s "
                    f"(start {start.tolist()}, goal {goal.tolist()}); check robot/task"
                )
            self.spin_until(
                lambda t=t_reset: self._at_start(start, t), 10.0, "joint states at the start"
            )
            self.spin_for(0.05)  # the planner has heard the start too
            self.trigger("planner_reset")  # clears the goal; holds the measured start
            t_goal = time.monotonic()
            self._send_goal(goal)
            end = t_goal + 10.0
            while not (self.status_t > t_goal and self.status.get("goal") == self.kind):
                if time.monotonic() > end:
                    raise EvalError(f"the planner never acknowledged the {self.kind} goal")
                self.spin_for(0.05)
                if time.monotonic() - t_goal > 1.0:
                    self._send_goal(goal)  # a goal published before discovery completed is lost
            if self._at_start(start, t_reset):
                break  # nothing moved the arm while the episode was being set up
        else:
            raise EvalError(f"seed {seed}: the arm would not stay at its start")

        base = dict(self.status)
        plan_ms: list[float] = []
        plans = [int(base.get("plans", 0))]

        def sample(s: dict[str, Any]) -> None:
            if int(s.get("plans", 0)) > plans[0] and s.get("last_plan_time_ms") is not None:
                plan_ms.append(float(s["last_plan_time_ms"]))
            plans[0] = int(s.get("plans", 0))

        seen = len(self.reports)
        t0 = time.monotonic()
        self.on_status = sample
        try:
            self.trigger("start_episode")
            self.transition(Transition.TRANSITION_ACTIVATE)
            timeout = 4 * self.steps * self.period / self.rtf + 20.0
            self.spin_until(
                lambda: any(r["phase"] == "done" for r in self.reports[seen:]),
                timeout,
                f"the end of episode {i} ({self.steps} control periods)",
            )
            t_done = time.monotonic()
            self.spin_until(lambda: self.status_t > t_done, 5.0, "the planner's final status")
        finally:
            self.on_status = None
        wall = time.monotonic() - t0
        self.stop_planner()
        done = next(r for r in self.reports[seen:] if r["phase"] == "done")
        end_status = self.status

        def delta(key: str) -> int:
            return int(end_status.get(key, 0)) - int(base.get(key, 0))

        latency = end_status.get("latency_ms") or {}
        return {
            "episode": i,
            "seed": seed,
            "goal_kind": self.kind,
            "goal": goal.tolist(),
            "start": start.tolist(),
            "arm_goal": report["target"],
            "arm_start": report["start"],
            "success": bool(done["success"]),
            "ever_success": bool(done["ever_success"]),
            "ret": float(done["return"]),
            "final_distance": float(done["final_distance"]),
            "initial_distance": float(done["initial_distance"]),
            "steps": int(done["steps"]),
            "plans": delta("plans"),
            "plan_ms_mean": float(np.mean(plan_ms)) if plan_ms else math.nan,
            "plan_ms_max": float(np.max(plan_ms)) if plan_ms else math.nan,
            "plan_samples": len(plan_ms),
            "deadline_misses": delta("deadline_misses"),
            "clamped": delta("commands_clamped"),
            "plan_errors": delta("plan_errors"),
            "latency_ms_p50": _num(latency.get("p50")),
            "latency_ms_p99": _num(latency.get("p99")),
            "wall_s": wall,
        }

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.env.close()


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m ros_nodes.eval_client SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    out = Path(spec["out"])
    rclpy.init()
    client: EvalClient | None = None
    try:
        client = EvalClient(spec)
        client.wait_ready()
        for i in range(int(spec["episodes"])):
            row = client.episode(i)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"  episode {i:3d} (seed {row['seed']}, ros): return {row['ret']:9.2f} "
                f"success={row['success']} final distance {row['final_distance']:.4f} "
                f"plans {row['plans']} deadline misses {row['deadline_misses']}",
                flush=True,
            )
        return 0
    except EvalError as e:
        print(f"eval_client: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if client is not None:
            client.close()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    raise SystemExit(main())

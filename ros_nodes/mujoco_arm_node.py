"""MuJoCo arm node: simulates a robot from :mod:`robots` and speaks the ros2_control topics a real
arm does (see ``docs/ros.md``).

Publishes ``/joint_states``, ``<camera>/color`` (rgb8) and ``<camera>/camera_info``; accepts
``/<controller>/joint_trajectory`` (points interpolated linearly by ``time_from_start``; a zero
header stamp starts now) and ``/<controller>/commands`` (position commands; non-finite entries
keep their previous value); holds the measured position when no command arrived for
``command_timeout`` seconds; offers ``~/reset_world`` (std_srvs/Trigger). The scene is the
:class:`~wm_planning.envs.arm.ArmEnv` of (robot, task), so the camera sees what the planner's
exact-physics model renders; ``randomization`` names a ``configs/randomization`` option (plus
``randomization_overrides``, ``knob=value`` entries) applied to the physics at start and on
every reset.

Evaluation episodes (``wm-plan eval path=ros``, ``ros_nodes/eval_client.py``): with the
parameter ``episode_seed`` >= 0, ``~/reset_world`` resets the task env with that seed, i.e. the
start configuration, goal and physics sample of the in-process harness's episode for that seed;
``~/start_episode`` (Trigger) then scores the next ``episode_steps`` control periods with the
task's own definition (``ArmEnv.evaluate``: distance and success; the env reward per period).
Both are reported as JSON on ``~/episode`` (std_msgs/String, transient local).

Time: the physics runs in its own thread at ``real_time_factor`` × wall time (0: as fast as
possible). With ``publish_clock`` the node publishes ``/clock`` and stamps messages with simulated
time (pair it with ``use_sim_time`` in other nodes).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np
import rclpy
import rclpy.executors
import rclpy.logging
from builtin_interfaces.msg import Time as TimeMsg
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros_nodes.conversions import InputError, duration_to_seconds, rgb_to_image_fields
from ros_nodes.runtime import parse_overrides, shut_down, spin_until_shutdown
from ros_nodes.safety import ThrottledLog, TimedPlan


def camera_intrinsics(fovy_deg: float, width: int, height: int) -> tuple[float, float, float]:
    """``(f, cx, cy)`` of a MuJoCo camera: fx = fy = (h/2)/tan(fovy/2), cx = w/2, cy = h/2."""
    f = (height / 2) / math.tan(math.radians(fovy_deg) / 2)
    return f, width / 2, height / 2


@dataclass
class _Command:
    """What the servos track: a timed trajectory (sim seconds) or a fixed target."""

    target: np.ndarray  # n, used when ``plan`` is None or before it starts
    plan: TimedPlan | None = None
    received: float = -math.inf  # sim time of the last command message


@dataclass
class _Episode:
    """Scoring of one evaluation episode, one record per control period of simulated physics
    (``substeps`` physics steps, as ``ArmEnv.step``), like the in-process harness's steps."""

    seed: int
    steps: int
    substeps: int
    q_ref: np.ndarray  # servo target at the last period boundary
    initial_distance: float
    count: int = 0  # physics steps since the start
    step: int = 0
    ret: float = 0.0
    ever_success: bool = False
    distance: float = math.nan
    success: bool = False

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    def report(self) -> dict[str, Any]:
        return {
            "phase": "done" if self.done else "running",
            "seed": self.seed,
            "steps": self.step,
            "return": self.ret,
            "initial_distance": self.initial_distance,
            "final_distance": self.distance,
            "success": self.success,
            "ever_success": self.ever_success,
        }


class MujocoArmNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("mujoco_arm", **kwargs)
        p = self._declare()
        # Imported here: building the env pulls in MuJoCo scene construction and configs.
        from wm_planning.envs.arm import ArmEnv

        self.env = ArmEnv(p["robot"], p["task"], camera=None)
        self.robot = self.env.robot
        m = self.env.model
        self.model, self.data = m, self.env.data
        self._randomizer = self._make_randomizer(
            p["randomization"], list(p["randomization_overrides"])
        )
        self._seed = int(p["seed"])
        self._resets = 0
        self._episode: _Episode | None = None
        # env action that moves the servo target this far in one control period (ArmEnv.step)
        self._vstep = np.asarray(self.robot.velocity_limits) * self.env.spec.control_dt
        self._qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in self.robot.joint_names])
        self._dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in self.robot.joint_names])
        self._act = np.array([m.actuator(a).id for a in self.robot.actuator_names])
        self._index = {n: i for i, n in enumerate(self.robot.joint_names)}
        self.rtf = float(p["real_time_factor"])
        if not (math.isfinite(self.rtf) and self.rtf >= 0):
            raise ValueError(
                f"real_time_factor must be >= 0 (0 = as fast as possible), got {self.rtf}"
            )
        self.command_timeout = float(p["command_timeout"])
        self.publish_clock = bool(p["publish_clock"])
        self.js_period = 1.0 / float(p["joint_state_rate"])
        self.cam_period = 1.0 / float(p["camera_rate"]) if p["camera_rate"] > 0 else math.inf
        self.cam_size = (int(p["image_height"]), int(p["image_width"]))
        cams = list(p["cameras"]) or [self.robot.cameras[0]]
        known = {m.camera(i).name for i in range(m.ncam)}
        bad = [c for c in cams if c not in known]
        if bad:
            raise ValueError(
                f"camera(s) {bad} not in the {self.robot.name} scene; it has {sorted(known)}"
            )
        self.cameras = cams
        self._log = ThrottledLog(lambda msg: self.get_logger().warning(msg), period=5.0)
        self._lock = threading.Lock()
        # Late joiners (the eval client) get the last report.
        latched = QoSProfile(depth=5, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.episode_pub = self.create_publisher(String, "~/episode", latched)
        self._reset_state()

        ctrl = p["controller"]
        self.js_pub = self.create_publisher(JointState, "/joint_states", 10)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        self.img_pubs = {
            c: self.create_publisher(Image, f"{c}/color", qos_profile_sensor_data) for c in cams
        }
        self.info_pubs = {
            c: self.create_publisher(CameraInfo, f"{c}/camera_info", 10) for c in cams
        }
        self.create_subscription(
            JointTrajectory, f"/{ctrl}/joint_trajectory", self._on_trajectory, 10
        )
        self.create_subscription(Float64MultiArray, f"/{ctrl}/commands", self._on_commands, 10)
        self.create_service(Trigger, "~/reset_world", self._on_reset)
        self.create_service(Trigger, "~/start_episode", self._on_start_episode)
        self._renderer: mujoco.Renderer | None = None
        self._running = True
        self._thread = threading.Thread(target=self._run, name="mujoco_sim", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"simulating {self.robot.name} ({self.env.cfg.task} scene), controller '{ctrl}', "
            f"cameras {cams} at {self.cam_size[1]}x{self.cam_size[0]}, real_time_factor {self.rtf:g}"
        )

    # -- parameters ---------------------------------------------------------------------------
    def _declare(self) -> dict[str, Any]:
        defaults: dict[str, Any] = {
            "robot": "planar",
            "task": "goal_reach",
            "controller": "arm_controller",
            "cameras": Parameter.Type.STRING_ARRAY,
            "image_width": 160,
            "image_height": 120,
            "camera_rate": 10.0,
            "joint_state_rate": 100.0,
            "real_time_factor": 1.0,
            "publish_clock": False,
            "command_timeout": 0.5,
            "randomization": "",
            "randomization_overrides": Parameter.Type.STRING_ARRAY,
            "seed": 0,
            "episode_seed": -1,
            "episode_steps": 0,
        }
        out: dict[str, Any] = {}
        for name, default in defaults.items():
            param = self.declare_parameter(name, default)
            out[name] = param.value if param.value is not None else []
        for rate in ("joint_state_rate",):
            if not out[rate] > 0:
                raise ValueError(f"{rate} must be > 0, got {out[rate]}")
        return out

    def _make_randomizer(self, name: str, overrides: list[str]) -> Any:
        from wm_planning.config import load_group
        from wm_planning.envs.randomization import RandomizationConfig, RandomizedEnv

        values = dict(load_group("randomization", name)) if name else {}
        values.update(parse_overrides(overrides, "randomization_overrides"))
        cfg = RandomizationConfig.from_dict(values)
        if cfg.is_nominal:
            return None
        name = name or "overrides"
        step_level = [
            k
            for k in ("obs_noise", "pixel_noise", "action_noise", "latency", "encoder_offset")
            if getattr(cfg, k)
        ]
        if step_level:
            # These act inside env.step()/observations, which this node bypasses (it steps the
            # physics itself and publishes true joint states).
            self.get_logger().warning(
                f"randomization {name!r}: {step_level} are not applied by this node"
            )
        # Zeroed so the wrapper does not ask the env for hooks only env.step() would use.
        cfg = dataclasses.replace(cfg, **{k: 0 for k in step_level})
        return RandomizedEnv(self.env, cfg)

    # -- state ----------------------------------------------------------------------------------
    def _reset_state(self) -> str:
        """Home pose, zero velocity, servos at home, a new randomization sample if configured;
        or, with ``episode_seed`` >= 0, that seed's evaluation episode. Returns what was done."""
        seed = int(self.get_parameter("episode_seed").value)
        report: dict[str, Any] | None = None
        with self._lock:
            self._episode = None
            if seed >= 0:
                # The harness's episode for this seed: RandomizedEnv/ArmEnv.reset(seed) samples
                # the physics, the start configuration and the goal exactly as in-process.
                env = self._randomizer if self._randomizer is not None else self.env
                env.reset(seed)
                start = self._measured()
                # Hold the start until the planner takes over (then the usual timeout rule).
                self._cmd = _Command(target=start.copy(), received=self.data.time)
                report = {
                    "phase": "reset",
                    "seed": seed,
                    "reset": self._resets,
                    "task": self.env.cfg.task,
                    "start": start.tolist(),
                    "target": self.env.target.tolist(),
                }
                done = f"{self.robot.name} reset to episode seed {seed}"
            else:
                if self._randomizer is not None:
                    # A new physics sample per reset, reproducible from (seed, reset count).
                    self._randomizer.reset(seed=self._seed + self._resets)
                mujoco.mj_resetData(self.model, self.data)
                home = np.asarray(self.robot.home, dtype=float)
                self.data.qpos[self._qadr] = home
                self.data.ctrl[self._act] = home
                mujoco.mj_forward(self.model, self.data)
                self._cmd = _Command(target=home.copy())
                done = f"{self.robot.name} reset to home"
            self._resets += 1
            self._wall0 = time.monotonic()
            # Wall-clock stamps = this offset + sim time (unused with publish_clock).
            self._wall_stamp0 = self.get_clock().now().nanoseconds * 1e-9
        if report is not None:
            self._publish_report(report)
        return done

    def _publish_report(self, report: dict[str, Any]) -> None:
        self.episode_pub.publish(String(data=json.dumps(report)))

    def _score(self, ep: _Episode) -> None:
        """One control period of ``ep`` ended (lock held): the env's distance, success and reward
        on the true state. The action is reconstructed from the servo target's change over the
        period (the planner streams positions, not the env's normalised velocity actions)."""
        q_ref = self._target(self.data.time)
        action = np.clip((q_ref - ep.q_ref) / self._vstep, -1.0, 1.0)
        ep.q_ref = q_ref
        distance, success = self.env.evaluate()  # also refreshes the boundary sensors
        phys = self.env.get_state()[: self.env.nphys]
        f = self.env.features(
            phys[None], self.data.sensordata[None], q_ref[None], action[None], self.env.target[None]
        )
        ep.ret -= float(self.env.cost(f)[0][0])
        ep.step += 1
        ep.distance, ep.success = float(distance), bool(success)
        ep.ever_success |= ep.success

    def _measured(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def _target(self, t: float) -> np.ndarray:
        c = self._cmd
        if self.command_timeout > 0 and t - c.received > self.command_timeout:
            # Stale commands: stop where the arm is now rather than finish an old trajectory.
            self._cmd = c = _Command(target=self._measured())
        if c.plan is not None:
            return c.plan.position_at(t, c.target)
        return c.target

    # -- command callbacks -----------------------------------------------------------------------
    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            names = list(msg.joint_names)
            unknown = [n for n in names if n not in self._index]
            if unknown or len(set(names)) != len(names) or len(names) != len(self._index):
                raise InputError(
                    "traj_names",
                    f"joint_trajectory must name each of {list(self._index)} once; got {names}",
                )
            if not msg.points:
                raise InputError("traj_empty", "joint_trajectory has no points")
            order = [self._index[n] for n in names]
            times, pts = [], []
            for k, pt in enumerate(msg.points):
                q = np.asarray(pt.positions, dtype=float)
                if q.size != len(names) or not np.all(np.isfinite(q)):
                    raise InputError(
                        "traj_point", f"joint_trajectory point {k} has bad positions {q.tolist()}"
                    )
                row = np.empty(len(names))
                row[order] = q
                pts.append(np.clip(row, self.robot.lower, self.robot.upper))
                times.append(
                    duration_to_seconds(pt.time_from_start.sec, pt.time_from_start.nanosec)
                )
            if times[0] <= 0 or np.any(np.diff(times) <= 0):
                raise InputError(
                    "traj_time", f"time_from_start must be > 0 and increasing, got {times}"
                )
        except InputError as e:
            self._log(e.key, f"dropped joint_trajectory: {e}")
            return
        stamp = msg.header.stamp
        with self._lock:
            now = self.data.time
            start = now
            if stamp.sec or stamp.nanosec:
                # A stamped trajectory starts at that (sim or wall) time; late starts skip ahead.
                start = duration_to_seconds(stamp.sec, stamp.nanosec) - self._time_offset()
            from_q = self._target(now)
            self._cmd = _Command(
                target=from_q, plan=TimedPlan(start, np.array(times), np.array(pts)), received=now
            )

    def _on_commands(self, msg: Float64MultiArray) -> None:
        q = np.asarray(msg.data, dtype=float)
        if q.size != len(self._index):
            self._log(
                "cmd_length", f"dropped commands: {q.size} values for {len(self._index)} joints"
            )
            return
        with self._lock:
            now = self.data.time
            prev = self._target(now)
            bad = ~np.isfinite(q)
            if bad.any():
                self._log(
                    "cmd_nan",
                    f"commands: non-finite values at {np.flatnonzero(bad).tolist()} dropped",
                )
            q = np.where(bad, prev, q)
            self._cmd = _Command(
                target=np.clip(q, self.robot.lower, self.robot.upper), received=now
            )

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            response.message = self._reset_state()
            response.success = True
        except (ValueError, RuntimeError) as e:  # e.g. a task that cannot sample this seed
            response.success, response.message = False, f"reset failed: {e}"
        return response

    def _on_start_episode(
        self, request: Trigger.Request, response: Trigger.Response
    ) -> Trigger.Response:
        steps = int(self.get_parameter("episode_steps").value) or self.env.spec.episode_length
        with self._lock:
            distance, _ = self.env.evaluate()
            self._episode = ep = _Episode(
                seed=int(self.get_parameter("episode_seed").value),
                steps=steps,
                substeps=self.env.n_substeps,
                q_ref=self._target(self.data.time),
                initial_distance=float(distance),
            )
        self._publish_report(ep.report())
        response.success = True
        response.message = f"scoring {steps} control periods"
        return response

    # -- simulation thread ---------------------------------------------------------------------------
    def _time_offset(self) -> float:
        """Stamp time minus sim time (0 when stamping with sim time)."""
        return 0.0 if self.publish_clock else self._wall_stamp0

    def _stamp(self, sim_t: float) -> TimeMsg:
        t = sim_t + self._time_offset()
        msg = TimeMsg()
        msg.sec = int(t)
        msg.nanosec = int((t - int(t)) * 1e9)
        return msg

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # log and stop the thread; the node keeps serving its services
            self.get_logger().error(f"simulation thread stopped: {type(e).__name__}: {e}")
            raise

    def _loop(self) -> None:
        m, d = self.model, self.data
        next_js = next_cam = 0.0
        resets = self._resets
        while self._running and rclpy.ok():
            report = None
            with self._lock:
                dt = m.opt.timestep  # a reset may randomize it (control_rate knob)
                if resets != self._resets:  # sim time restarted at 0
                    resets, next_js, next_cam = self._resets, 0.0, 0.0
                if self.rtf > 0:
                    sim_goal = (time.monotonic() - self._wall0) * self.rtf
                    if sim_goal > d.time + 0.1:
                        # Fell behind (loaded machine): run slower than real time, not in bursts.
                        sim_goal = d.time + 0.1
                        self._wall0 = time.monotonic() - sim_goal / self.rtf
                else:
                    sim_goal = d.time + min(self.js_period, self.cam_period)
                ep = self._episode
                while d.time + 0.5 * dt < sim_goal:
                    d.ctrl[self._act] = self._target(d.time)
                    mujoco.mj_step(m, d)
                    if ep is not None and not ep.done:
                        ep.count += 1
                        if ep.count % ep.substeps == 0:
                            self._score(ep)
                            report = ep.report() if ep.done else None
                t = d.time
                js = self._joint_state(t) if t >= next_js else None
                if js is not None:
                    next_js = (math.floor(t / self.js_period) + 1) * self.js_period
                images = self._render(t) if t >= next_cam else None
                if images is not None:
                    next_cam = (math.floor(t / self.cam_period) + 1) * self.cam_period
            try:
                if report is not None:
                    self._publish_report(report)
                if self.clock_pub is not None:
                    self.clock_pub.publish(Clock(clock=self._stamp(t)))
                if js is not None:
                    self.js_pub.publish(js)
                if images is not None:
                    for cam, (img, info) in images.items():
                        self.img_pubs[cam].publish(img)
                        self.info_pubs[cam].publish(info)
            except Exception:
                if not self.context.ok():
                    return  # shutting down (Ctrl-C): the context went away under this thread
                raise
            if self.rtf > 0:
                wake = min(next_js, next_cam, t + 5 * dt) / self.rtf
                time.sleep(max(0.0, min(0.005, wake - (time.monotonic() - self._wall0))))

    def _joint_state(self, t: float) -> JointState:
        d = self.data
        msg = JointState()
        msg.header.stamp = self._stamp(t)
        msg.name = list(self.robot.joint_names)
        msg.position = d.qpos[self._qadr].tolist()
        msg.velocity = d.qvel[self._dadr].tolist()
        msg.effort = d.actuator_force[self._act].tolist()
        return msg

    def _render(self, t: float) -> dict[str, tuple[Image, CameraInfo]] | None:
        if not self.cameras or math.isinf(self.cam_period):
            return None
        h, w = self.cam_size
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, height=h, width=w)
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                self._renderer.scene.flags[flag] = False
        out = {}
        for cam in self.cameras:
            self._renderer.update_scene(self.data, camera=cam)
            fields = rgb_to_image_fields(self._renderer.render())
            img = Image()
            img.header.stamp = self._stamp(t)
            img.header.frame_id = cam
            img.height, img.width, img.encoding, img.step = (
                fields.height,
                fields.width,
                fields.encoding,
                fields.step,
            )
            img.data = fields.data
            f, cx, cy = camera_intrinsics(float(self.model.camera(cam).fovy[0]), w, h)
            info = CameraInfo()
            info.header = img.header
            info.height, info.width = h, w
            info.distortion_model = "plumb_bob"
            info.d = [0.0] * 5
            info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
            out[cam] = (img, info)
        return out

    def close(self) -> None:
        self._running = False
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.env.close()


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=sys.argv if argv is None else argv)
    node: MujocoArmNode | None = None
    code = 0
    try:
        node = MujocoArmNode()
        spin_until_shutdown(node)
    except (KeyError, ValueError, FileNotFoundError) as e:  # bad parameters: one clear line
        rclpy.logging.get_logger("mujoco_arm").error(f"cannot start: {type(e).__name__}: {e}")
        code = 2
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        shut_down(node, node.close if node is not None else None)
    return code


if __name__ == "__main__":
    raise SystemExit(main())

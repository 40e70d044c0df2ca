"""Robot descriptions: one frozen record per arm plus a registry.

A :class:`Robot` names an MJCF file and what a controller needs to know about it: joint and
actuator names (ROS names), position/velocity/effort limits, home pose, end-effector site,
cameras and actuator mode. ``get(name)`` returns a built-in record (``panda``, ``ur5e``,
``planar``; MJCF under ``sim_assets/``); ``from_mjcf(path, joint_names=..., ee_site=...)`` reads
an external MJCF (e.g. a MuJoCo Menagerie checkout), taking the limits from the file.

This layer imports only mujoco and numpy (see ``docs/architecture.md``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mujoco
import numpy as np


def share_path(name: str) -> Path:
    """Where the package's data folder ``name`` (``sim_assets``, ``configs``) lives.

    ``$WM_PLANNING_SHARE/<name>`` if set; else beside the package (a source checkout or editable
    install); else the ament share directory of a ``colcon build`` install
    (``share/wm_planning/<name>``, where setup.py puts it).
    """
    env = os.environ.get("WM_PLANNING_SHARE")
    if env:
        return Path(env) / name
    local = Path(__file__).resolve().parents[1] / name
    if local.is_dir():
        return local
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("wm_planning")) / name
    except Exception:  # not installed through ament, or ament_index_python absent
        return local


ASSETS = share_path("sim_assets")

ActuatorMode = Literal["position", "torque"]


@dataclass(frozen=True)
class Robot:
    """Static description of an arm. All per-joint tuples are in ``joint_names`` order (n)."""

    name: str
    mjcf: Path
    joint_names: tuple[str, ...]
    actuator_names: tuple[str, ...]
    position_limits: tuple[tuple[float, float], ...]  # n × (low, high), rad
    velocity_limits: tuple[float, ...]  # n, rad/s
    effort_limits: tuple[float, ...]  # n, N·m
    home: tuple[float, ...]  # n, rad
    ee_site: str
    cameras: tuple[str, ...] = ("scene",)  # first is the default fixed scene camera
    actuator_mode: ActuatorMode = "position"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mjcf", Path(self.mjcf))
        n = len(self.joint_names)
        if n == 0:
            raise ValueError(f"robot {self.name!r}: no joints")
        for field_name in (
            "actuator_names",
            "position_limits",
            "velocity_limits",
            "effort_limits",
            "home",
        ):
            if len(getattr(self, field_name)) != n:
                raise ValueError(
                    f"robot {self.name!r}: {field_name} has {len(getattr(self, field_name))} "
                    f"entries for {n} joints"
                )
        if self.actuator_mode not in ("position", "torque"):
            raise ValueError(f"robot {self.name!r}: unknown actuator_mode {self.actuator_mode!r}")
        for j, ((lo, hi), v, e, h) in enumerate(
            zip(
                self.position_limits,
                self.velocity_limits,
                self.effort_limits,
                self.home,
                strict=True,
            )
        ):
            if not lo < hi:
                raise ValueError(f"robot {self.name!r}: joint {j} needs low < high, got {lo, hi}")
            if not (v > 0 and e > 0):
                raise ValueError(
                    f"robot {self.name!r}: joint {j} velocity/effort limits must be > 0"
                )
            if not lo <= h <= hi:
                raise ValueError(f"robot {self.name!r}: home[{j}]={h} outside [{lo}, {hi}]")

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def lower(self) -> np.ndarray:
        """``n`` lower position limits."""
        return np.array([lo for lo, _ in self.position_limits])

    @property
    def upper(self) -> np.ndarray:
        """``n`` upper position limits."""
        return np.array([hi for _, hi in self.position_limits])

    def load_model(self) -> mujoco.MjModel:
        return mujoco.MjModel.from_xml_path(str(self.mjcf))


# -- registry -------------------------------------------------------------------------------------
_REGISTRY: dict[str, Robot] = {}


def register(robot: Robot) -> Robot:
    """Add a record to the registry (same name twice is an error unless it is the same record)."""
    if robot.name in _REGISTRY and _REGISTRY[robot.name] != robot:
        raise ValueError(f"robot {robot.name!r} already registered")
    _REGISTRY[robot.name] = robot
    return robot


def available() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Robot:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown robot {name!r}; available: {', '.join(available())}") from None


# -- external MJCF --------------------------------------------------------------------------------
def _names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int) -> list[str]:
    return [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]


def from_mjcf(
    path: str | Path,
    *,
    joint_names: Sequence[str],
    ee_site: str,
    name: str | None = None,
    actuator_names: Sequence[str] | None = None,
    velocity_limits: Sequence[float] | None = None,
    home: Sequence[float] | None = None,
    cameras: Sequence[str] = (),
    actuator_mode: ActuatorMode = "position",
    default_velocity_limit: float = math.pi / 2,
) -> Robot:
    """Describe an arm from an external MJCF file, reading what the file states.

    Position limits come from the joints' ``range`` (every joint must be limited); effort limits
    from the actuators' ``forcerange`` or else the joints' ``actuatorfrcrange``; home from a
    keyframe named ``home`` or else the middle of each range. ``actuator_names`` defaults to the
    actuators that drive the joints directly. MJCF has no velocity limits, so pass
    ``velocity_limits`` (else ``default_velocity_limit`` for every joint).
    Raises ``FileNotFoundError``/``ValueError`` naming what is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MJCF file {path} not found")
    model = mujoco.MjModel.from_xml_path(str(path))
    robot_name = name or path.stem
    all_joints = _names(model, mujoco.mjtObj.mjOBJ_JOINT, model.njnt)
    missing = [j for j in joint_names if j not in all_joints]
    if missing:
        raise ValueError(f"{path}: joint(s) {missing} not found; the file has {all_joints}")
    sites = _names(model, mujoco.mjtObj.mjOBJ_SITE, model.nsite)
    if ee_site not in sites:
        raise ValueError(f"{path}: site {ee_site!r} not found; the file has {sites}")
    all_cams = _names(model, mujoco.mjtObj.mjOBJ_CAMERA, model.ncam)
    bad_cams = [c for c in cameras if c not in all_cams]
    if bad_cams:
        raise ValueError(f"{path}: camera(s) {bad_cams} not found; the file has {all_cams}")

    jids = [model.joint(j).id for j in joint_names]
    limits = []
    for j, jid in zip(joint_names, jids, strict=True):
        if int(model.jnt_type[jid]) not in (
            int(mujoco.mjtJoint.mjJNT_HINGE),
            int(mujoco.mjtJoint.mjJNT_SLIDE),
        ):
            raise ValueError(f"{path}: joint {j!r} is not a hinge or slide joint")
        if not model.jnt_limited[jid]:
            raise ValueError(f"{path}: joint {j!r} has no range; planning needs position limits")
        limits.append((float(model.jnt_range[jid, 0]), float(model.jnt_range[jid, 1])))

    all_acts = _names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu)
    if actuator_names is None:
        by_joint = {
            int(model.actuator_trnid[a, 0]): all_acts[a]
            for a in range(model.nu)
            if int(model.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
        }
        no_act = [j for j, jid in zip(joint_names, jids, strict=True) if jid not in by_joint]
        if no_act:
            raise ValueError(f"{path}: no actuator drives joint(s) {no_act}")
        actuator_names = [by_joint[jid] for jid in jids]
    bad_acts = [a for a in actuator_names if a not in all_acts]
    if bad_acts:
        raise ValueError(f"{path}: actuator(s) {bad_acts} not found; the file has {all_acts}")

    efforts = []
    for j, jid, act in zip(joint_names, jids, actuator_names, strict=True):
        aid = model.actuator(act).id
        if model.actuator_forcelimited[aid]:
            efforts.append(float(np.max(np.abs(model.actuator_forcerange[aid]))))
        elif model.jnt_actfrclimited[jid]:
            efforts.append(float(np.max(np.abs(model.jnt_actfrcrange[jid]))))
        else:
            raise ValueError(
                f"{path}: no effort limit for joint {j!r} (forcerange/actuatorfrcrange)"
            )

    if home is None:
        qadr = [int(model.jnt_qposadr[jid]) for jid in jids]
        key_names = _names(model, mujoco.mjtObj.mjOBJ_KEY, model.nkey)
        if "home" in key_names:
            home = [float(model.key("home").qpos[a]) for a in qadr]
        else:
            home = [(lo + hi) / 2 for lo, hi in limits]
    vel = (
        tuple(float(v) for v in velocity_limits)
        if velocity_limits is not None
        else (default_velocity_limit,) * len(joint_names)
    )
    return Robot(
        name=robot_name,
        mjcf=path.resolve(),
        joint_names=tuple(joint_names),
        actuator_names=tuple(actuator_names),
        position_limits=tuple(limits),
        velocity_limits=vel,
        effort_limits=tuple(efforts),
        home=tuple(float(h) for h in home),
        ee_site=ee_site,
        cameras=tuple(cameras),
        actuator_mode=actuator_mode,
    )


# -- built-in arms (numbers from docs/robot-facts.md; the MJCF files carry the same limits) ------
_PI = math.pi
PANDA = register(
    Robot(
        name="panda",
        mjcf=ASSETS / "panda.xml",
        joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
        actuator_names=tuple(f"actuator{i}" for i in range(1, 8)),
        position_limits=(
            (-2.8973, 2.8973),
            (-1.7628, 1.7628),
            (-2.8973, 2.8973),
            (-3.0718, -0.0698),
            (-2.8973, 2.8973),
            (-0.0175, 3.7525),
            (-2.8973, 2.8973),
        ),
        velocity_limits=(2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
        effort_limits=(87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0),
        home=(0.0, -_PI / 4, 0.0, -3 * _PI / 4, 0.0, _PI / 2, _PI / 4),
        ee_site="ee",
        cameras=("scene", "wrist"),
    )
)

# UR5e joints rotate +-2pi (elbow +-pi); the planning range is +-pi on every joint so that sampled
# goals and q_ref never wind up a full turn away from an equivalent configuration.
UR5E = register(
    Robot(
        name="ur5e",
        mjcf=ASSETS / "ur5e.xml",
        joint_names=(
            "shoulder_pan_joint",
            "shoulder_lift_joint",
            "elbow_joint",
            "wrist_1_joint",
            "wrist_2_joint",
            "wrist_3_joint",
        ),
        actuator_names=(
            "shoulder_pan",
            "shoulder_lift",
            "elbow",
            "wrist_1",
            "wrist_2",
            "wrist_3",
        ),
        position_limits=((-3.14159, 3.14159),) * 6,
        velocity_limits=(_PI,) * 6,
        effort_limits=(150.0, 150.0, 150.0, 28.0, 28.0, 28.0),
        home=(0.0, -_PI / 2, _PI / 2, -_PI / 2, -_PI / 2, 0.0),
        ee_site="ee",
        cameras=("scene", "wrist"),
    )
)

PLANAR = register(
    Robot(
        name="planar",
        mjcf=ASSETS / "planar.xml",
        joint_names=("joint1", "joint2", "joint3"),
        actuator_names=("actuator1", "actuator2", "actuator3"),
        position_limits=((-3.1416, 3.1416), (-2.6, 2.6), (-2.6, 2.6)),
        velocity_limits=(3.0, 3.0, 3.0),
        effort_limits=(10.0, 10.0, 10.0),
        home=(0.0, 0.5, 0.5),
        ee_site="ee",
        cameras=("scene",),
    )
)

__all__ = [
    "ASSETS",
    "PANDA",
    "PLANAR",
    "UR5E",
    "Robot",
    "available",
    "from_mjcf",
    "get",
    "register",
]

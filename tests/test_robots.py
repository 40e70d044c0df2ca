"""Robot records: MJCF forward kinematics against independent DH computations, limits and names
against the files, YAML mirrors, and external-MJCF loading."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

import robots

ROOT = Path(__file__).resolve().parents[1]


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def trans(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def panda_fk(q: np.ndarray) -> np.ndarray:
    """Flange pose, modified (Craig) DH from Franka's published table."""
    rows = [
        (0, 0.333, 0),
        (0, 0, -math.pi / 2),
        (0, 0.316, math.pi / 2),
        (0.0825, 0, math.pi / 2),
        (-0.0825, 0.384, -math.pi / 2),
        (0, 0, math.pi / 2),
        (0.088, 0, math.pi / 2),
    ]
    t = np.eye(4)
    for (a, d, alpha), qi in zip(rows, q, strict=True):
        t = t @ rot_x(alpha) @ trans(a, 0, 0) @ rot_z(qi) @ trans(0, 0, d)
    return t @ trans(0, 0, 0.107)


def ur5e_fk(q: np.ndarray) -> np.ndarray:
    """Flange (tool0) pose, standard DH from Universal Robots' table; base turned by pi about z
    as in the ROS description."""
    rows = [
        (0, 0.1625, math.pi / 2),
        (-0.425, 0, 0),
        (-0.3922, 0, 0),
        (0, 0.1333, math.pi / 2),
        (0, 0.0997, -math.pi / 2),
        (0, 0.0996, 0),
    ]
    t = rot_z(math.pi)
    for (a, d, alpha), qi in zip(rows, q, strict=True):
        t = t @ rot_z(qi) @ trans(0, 0, d) @ trans(a, 0, 0) @ rot_x(alpha)
    return t


def site_pose(robot: robots.Robot, q: np.ndarray, site: str) -> np.ndarray:
    m = robot.load_model()
    d = mujoco.MjData(m)
    for name, qi in zip(robot.joint_names, q, strict=True):
        d.qpos[m.jnt_qposadr[m.joint(name).id]] = qi
    mujoco.mj_kinematics(m, d)
    t = np.eye(4)
    t[:3, :3] = d.site(site).xmat.reshape(3, 3)
    t[:3, 3] = d.site(site).xpos
    return t


@pytest.mark.parametrize(("name", "fk"), [("panda", panda_fk), ("ur5e", ur5e_fk)])
def test_fk_matches_dh(name: str, fk) -> None:
    robot = robots.get(name)
    rng = np.random.default_rng(0)
    configs = [np.zeros(robot.n_joints), np.asarray(robot.home)]
    configs += [rng.uniform(robot.lower, robot.upper) for _ in range(6)]
    for q in configs:
        ref, got = fk(q), site_pose(robot, q, "flange")
        assert np.linalg.norm(ref[:3, 3] - got[:3, 3]) < 1e-3, (q, ref[:3, 3], got[:3, 3])
        assert np.abs(ref[:3, :3] - got[:3, :3]).max() < 1e-3


def test_panda_pusher_tip_is_0103_past_flange() -> None:
    robot = robots.get("panda")
    q = np.asarray(robot.home)
    flange, ee = site_pose(robot, q, "flange"), site_pose(robot, q, "ee")
    expected = flange[:3, 3] + 0.103 * flange[:3, 2]
    assert np.linalg.norm(ee[:3, 3] - expected) < 1e-6


@pytest.mark.parametrize("name", ["panda", "ur5e", "planar"])
def test_record_matches_mjcf(name: str) -> None:
    robot = robots.get(name)
    m = robot.load_model()
    for j, (lo, hi), eff in zip(
        robot.joint_names, robot.position_limits, robot.effort_limits, strict=True
    ):
        jid = m.joint(j).id
        assert m.jnt_limited[jid]
        np.testing.assert_allclose(m.jnt_range[jid], [lo, hi], atol=1e-6)
        if m.jnt_actfrclimited[jid]:
            np.testing.assert_allclose(np.abs(m.jnt_actfrcrange[jid]).max(), eff)
    for act, j, (lo, hi), eff in zip(
        robot.actuator_names,
        robot.joint_names,
        robot.position_limits,
        robot.effort_limits,
        strict=True,
    ):
        a = m.actuator(act)
        assert m.actuator_trnid[a.id, 0] == m.joint(j).id
        np.testing.assert_allclose(m.actuator_ctrlrange[a.id], [lo, hi], atol=1e-6)
        np.testing.assert_allclose(np.abs(m.actuator_forcerange[a.id]).max(), eff)
    m.site(robot.ee_site)
    for cam in robot.cameras:
        m.camera(cam)
    # home keyframe agrees with the record
    np.testing.assert_allclose(m.key("home").qpos, robot.home, atol=1e-6)
    # the external loader reads the same record back from the file
    ext = robots.from_mjcf(
        robot.mjcf,
        joint_names=robot.joint_names,
        ee_site=robot.ee_site,
        name=name,
        velocity_limits=robot.velocity_limits,
        cameras=robot.cameras,
    )
    np.testing.assert_allclose(ext.position_limits, robot.position_limits, atol=1e-6)
    assert ext.effort_limits == pytest.approx(robot.effort_limits)
    assert ext.actuator_names == robot.actuator_names
    assert ext.home == pytest.approx(robot.home, abs=1e-6)


@pytest.mark.parametrize("name", ["panda", "ur5e", "planar"])
def test_yaml_mirrors_record(name: str) -> None:
    robot = robots.get(name)
    data = yaml.safe_load((ROOT / "configs" / "robot" / f"{name}.yaml").read_text())
    assert data["name"] == robot.name
    assert (ROOT / data["mjcf"]).resolve() == robot.mjcf.resolve()
    assert tuple(data["joint_names"]) == robot.joint_names
    assert tuple(data["actuator_names"]) == robot.actuator_names
    assert np.allclose(data["position_limits"], robot.position_limits)
    assert np.allclose(data["velocity_limits"], robot.velocity_limits)
    assert np.allclose(data["effort_limits"], robot.effort_limits)
    assert np.allclose(data["home"], robot.home, atol=1e-6)
    assert data["ee_site"] == robot.ee_site
    assert tuple(data["cameras"]) == robot.cameras
    assert data["actuator_mode"] == robot.actuator_mode


def test_registry() -> None:
    assert {"panda", "ur5e", "planar"} <= set(robots.available())
    with pytest.raises(KeyError, match="unknown robot"):
        robots.get("nope")


EXTERNAL = """<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body name="a">
      <joint name="j1" axis="0 0 1" range="-1 2" actuatorfrcrange="-5 5"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/>
      <body name="b" pos="0.3 0 0">
        <joint name="j2" axis="0 0 1" range="-0.5 0.5"/>
        <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02"/>
        <site name="tip" pos="0.2 0 0"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <position name="m1" joint="j1" kp="10"/>
    <position name="m2" joint="j2" kp="10" forcerange="-3 3"/>
  </actuator>
</mujoco>
"""


def test_from_mjcf_external(tmp_path: Path) -> None:
    path = tmp_path / "arm.xml"
    path.write_text(EXTERNAL)
    r = robots.from_mjcf(path, joint_names=["j1", "j2"], ee_site="tip", velocity_limits=[1, 2])
    assert r.name == "arm"
    assert r.actuator_names == ("m1", "m2")
    assert r.position_limits == ((-1.0, 2.0), (-0.5, 0.5))
    assert r.effort_limits == (5.0, 3.0)
    assert r.velocity_limits == (1.0, 2.0)
    assert r.home == (0.5, 0.0)  # no home keyframe: middle of each range
    with pytest.raises(ValueError, match=r"joint\(s\) \['j3'\] not found"):
        robots.from_mjcf(path, joint_names=["j1", "j3"], ee_site="tip")
    with pytest.raises(ValueError, match="site 'flange' not found"):
        robots.from_mjcf(path, joint_names=["j1", "j2"], ee_site="flange")
    with pytest.raises(FileNotFoundError):
        robots.from_mjcf(tmp_path / "missing.xml", joint_names=["j1"], ee_site="tip")
    with pytest.raises(ValueError, match="velocity_limits has 1 entries"):
        robots.from_mjcf(path, joint_names=["j1", "j2"], ee_site="tip", velocity_limits=[1])

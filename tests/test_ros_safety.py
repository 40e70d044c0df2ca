"""Safety rules of the planner node (ros_nodes.safety), without ROS."""

from __future__ import annotations

import numpy as np
import pytest

import robots
from ros_nodes.safety import Gate, Limits, ThrottledLog, TimedPlan


@pytest.fixture
def limits() -> Limits:
    return Limits(np.array([-1.0, -2.0]), np.array([1.0, 2.0]), np.array([1.0, 0.5]))


def test_clamp_respects_velocity_then_position(limits: Limits) -> None:
    q, n = limits.clamp(np.array([0.5, 0.5]), np.zeros(2), dt=0.1)
    np.testing.assert_allclose(q, [0.1, 0.05])
    assert n == 2
    # inside both limits: unchanged
    q, n = limits.clamp(np.array([0.05, -0.01]), np.zeros(2), dt=0.1)
    np.testing.assert_allclose(q, [0.05, -0.01])
    assert n == 0
    # position box wins over the velocity step (a start outside the box is pulled back in)
    q, n = limits.clamp(np.array([1.5, 0.0]), np.array([1.2, 0.0]), dt=1.0)
    np.testing.assert_allclose(q, [1.0, 0.0])
    assert n == 1


def test_clamp_rejects_bad_input(limits: Limits) -> None:
    with pytest.raises(ValueError, match="2 joints"):
        limits.clamp(np.zeros(3), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match="non-finite"):
        limits.clamp(np.array([np.nan, 0.0]), np.zeros(2), 0.1)
    with pytest.raises(ValueError, match="period"):
        limits.clamp(np.zeros(2), np.zeros(2), 0.0)


def test_clamp_trajectory_chains_points(limits: Limits) -> None:
    pts = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]])
    out, n = limits.clamp_trajectory(pts, np.zeros(2), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(out, [[0.5, 0.25], [1.0, 0.5], [0.5, 0.75]])
    assert n == 5
    prev = np.zeros(2)
    for row in out:
        assert limits.within(row, prev, 0.5)
        prev = row


def test_limits_from_robot_and_validation() -> None:
    panda = robots.get("panda")
    lim = Limits.from_robot(panda, velocity_scale=0.5)
    np.testing.assert_allclose(lim.velocity, np.asarray(panda.velocity_limits) / 2)
    np.testing.assert_allclose(lim.lower, panda.lower)
    with pytest.raises(ValueError, match="velocity_scale"):
        Limits.from_robot(panda, velocity_scale=1.5)
    with pytest.raises(ValueError, match="lower < upper"):
        Limits(np.array([1.0]), np.array([0.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="velocity"):
        Limits(np.array([0.0]), np.array([1.0]), np.array([0.0]))


def test_gate_holds_for_each_reason() -> None:
    gate = Gate(max_age=0.2)
    fresh = {"joint_states": 0.01}
    assert gate.decide(enabled=True, has_goal=True, ages=fresh).plan
    assert gate.decide(enabled=False, has_goal=True, ages=fresh).reason == "disabled"
    d = gate.decide(enabled=True, has_goal=True, ages={"joint_states": None})
    assert not d.plan
    assert "waiting for joint_states" in d.reason
    d = gate.decide(enabled=True, has_goal=True, ages={"joint_states": 0.3, "camera": 0.1})
    assert not d.plan
    assert "stale" in d.reason
    assert "joint_states" in d.reason
    assert "camera" not in d.reason
    assert gate.decide(enabled=True, has_goal=False, ages=fresh).reason == "no goal"
    with pytest.raises(ValueError, match="max input age"):
        Gate(max_age=0.0)


def test_timed_plan_shift_and_interpolation() -> None:
    plan = TimedPlan(10.0, np.array([0.1, 0.2, 0.3]), np.array([[1.0], [2.0], [3.0]]))
    s = plan.shifted(10.15)
    assert s is not None
    np.testing.assert_allclose(s.times, [0.05, 0.15])
    np.testing.assert_allclose(s.points[:, 0], [2.0, 3.0])
    assert plan.shifted(10.3) is None  # exhausted: nothing to replay
    start = np.array([0.0])
    np.testing.assert_allclose(plan.position_at(10.05, start), [0.5])
    np.testing.assert_allclose(plan.position_at(10.25, start), [2.5])
    np.testing.assert_allclose(plan.position_at(99.0, start), [3.0])
    np.testing.assert_allclose(plan.position_at(0.0, start), [0.0])
    with pytest.raises(ValueError, match="increasing"):
        TimedPlan(0.0, np.array([0.2, 0.1]), np.zeros((2, 1)))


def test_throttled_log_counts_and_suppresses() -> None:
    now = [0.0]
    out: list[str] = []
    log = ThrottledLog(out.append, period=1.0, clock=lambda: now[0])
    assert log("nan", "bad")
    assert not log("nan", "bad")
    assert log("size", "other kind")  # another key is not throttled
    now[0] = 1.5
    assert log("nan", "bad")
    assert out == ["bad", "other kind", "bad (1 more like this suppressed)"]
    assert log.counts == {"nan": 3, "size": 1}

"""Safety rules of the planner node, in plain Python and numpy (testable without ROS).

- :class:`Limits` clamps every command to the robot's position limits and, over the command
  period, to its velocity limits relative to the previous command (or measured position).
- :class:`Gate` decides whether the node may plan: enabled, a goal present, every required input
  younger than ``max_age``; otherwise it holds the position measured when the hold began (it never
  replays a stale plan).
- :class:`TimedPlan` keeps the last accepted plan as timed joint positions so that a plan that
  misses its deadline is replaced by the previous plan shifted to the current time.
- :class:`ThrottledLog` reports each kind of bad input at most once per period, with a count of
  what it suppressed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Limits:
    """Per-joint position box and velocity bound (same order as the robot's joint names)."""

    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray

    def __post_init__(self) -> None:
        lo, hi, v = (
            np.asarray(x, dtype=np.float64).reshape(-1)
            for x in (self.lower, self.upper, self.velocity)
        )
        if not (lo.shape == hi.shape == v.shape) or lo.size == 0:
            raise ValueError(
                f"limits need equal non-empty sizes, got {lo.size}, {hi.size}, {v.size}"
            )
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
            raise ValueError("position limits need finite lower < upper")
        if not (np.all(np.isfinite(v)) and np.all(v > 0)):
            raise ValueError("velocity limits must be finite and > 0")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)
        object.__setattr__(self, "velocity", v)

    @classmethod
    def from_robot(cls, robot: object, velocity_scale: float = 1.0) -> Limits:
        """From a :class:`robots.Robot`; ``velocity_scale`` (0, 1] derates the velocity limits."""
        if not 0 < velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {velocity_scale}")
        return cls(
            np.asarray(robot.lower),  # type: ignore[attr-defined]
            np.asarray(robot.upper),  # type: ignore[attr-defined]
            np.asarray(robot.velocity_limits) * velocity_scale,  # type: ignore[attr-defined]
        )

    @property
    def n(self) -> int:
        return int(self.lower.size)

    def clamp(self, q: np.ndarray, q_from: np.ndarray, dt: float) -> tuple[np.ndarray, int]:
        """Clamp one position command reached ``dt`` seconds after ``q_from``.

        Returns the command and how many joints were changed. Position limits win over the
        velocity bound (a start outside the box is pulled back in).
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        q_from = np.asarray(q_from, dtype=np.float64).reshape(-1)
        if q.size != self.n or q_from.size != self.n:
            raise ValueError(f"commands need {self.n} joints, got {q.size} and {q_from.size}")
        if not (np.all(np.isfinite(q)) and np.all(np.isfinite(q_from))):
            raise ValueError("cannot clamp a non-finite command")
        if not (math.isfinite(dt) and dt > 0):
            raise ValueError(f"command period must be > 0, got {dt}")
        step = self.velocity * dt
        out = np.clip(q, q_from - step, q_from + step)
        out = np.clip(out, self.lower, self.upper)
        # Tolerance: clipping a value that was exactly on a bound is not a clamp.
        changed = int(np.count_nonzero(np.abs(out - q) > 1e-12))
        return out, changed

    def clamp_trajectory(
        self, points: np.ndarray, q_from: np.ndarray, dts: Sequence[float] | np.ndarray
    ) -> tuple[np.ndarray, int]:
        """Clamp ``H×n`` positions, point ``k`` reached ``dts[k]`` after point ``k-1``
        (point 0 after ``q_from``). Returns the positions and the number of clamped values."""
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != self.n:
            raise ValueError(f"trajectory must be H×{self.n}, got {points.shape}")
        if len(dts) != points.shape[0]:
            raise ValueError(f"{points.shape[0]} points need as many periods, got {len(dts)}")
        out = np.empty_like(points)
        prev = np.asarray(q_from, dtype=np.float64)
        total = 0
        for k in range(points.shape[0]):
            out[k], changed = self.clamp(points[k], prev, float(dts[k]))
            total += changed
            prev = out[k]
        return out, total

    def within(self, q: np.ndarray, q_from: np.ndarray, dt: float, tol: float = 1e-9) -> bool:
        """Whether ``q`` respects both limits (used by tests and assertions)."""
        q = np.asarray(q, dtype=np.float64)
        in_box = np.all(q >= self.lower - tol) and np.all(q <= self.upper + tol)
        slow = np.all(np.abs(q - np.asarray(q_from)) <= self.velocity * dt + tol)
        return bool(in_box and slow)


# -- when to plan ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    plan: bool
    reason: str  # "ok" or why the node holds


@dataclass
class Gate:
    """Plan only while enabled, with a goal, and with every required input fresh."""

    max_age: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_age) and self.max_age > 0):
            raise ValueError(f"max input age must be > 0 s, got {self.max_age}")

    def decide(
        self,
        *,
        enabled: bool,
        has_goal: bool,
        ages: Mapping[str, float | None],
    ) -> Decision:
        """``ages``: required input -> seconds since its last valid message (None: never)."""
        if not enabled:
            return Decision(False, "disabled")
        missing = sorted(k for k, a in ages.items() if a is None)
        if missing:
            return Decision(False, f"waiting for {', '.join(missing)}")
        stale = sorted(k for k, a in ages.items() if a is not None and a > self.max_age)
        if stale:
            return Decision(False, f"stale input: {', '.join(stale)} older than {self.max_age:g} s")
        if not has_goal:
            return Decision(False, "no goal")
        return Decision(True, "ok")


# -- the last plan, for deadline misses ------------------------------------------------------------
@dataclass
class TimedPlan:
    """Joint-position points at absolute times ``t0 + times[k]`` (monotonic seconds)."""

    t0: float
    times: np.ndarray  # H, seconds after t0, strictly increasing, > 0
    points: np.ndarray  # H×n

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        self.points = np.asarray(self.points, dtype=np.float64)
        if self.points.ndim != 2 or self.points.shape[0] != self.times.size or self.times.size == 0:
            raise ValueError(
                f"plan needs H×n points for H times, got {self.points.shape}, {self.times.size}"
            )
        if self.times[0] <= 0 or np.any(np.diff(self.times) <= 0):
            raise ValueError("plan times must be > 0 and strictly increasing")

    def shifted(self, now: float) -> TimedPlan | None:
        """The points still ahead at ``now``, re-timed relative to ``now``; None when exhausted."""
        ahead = self.t0 + self.times > now + 1e-9
        if not np.any(ahead):
            return None
        return TimedPlan(now, self.t0 + self.times[ahead] - now, self.points[ahead])

    def position_at(self, now: float, start: np.ndarray) -> np.ndarray:
        """Linear interpolation along the plan (``start`` at ``t0``); last point after the end."""
        t = now - self.t0
        times = np.concatenate([[0.0], self.times])
        pts = np.vstack([np.asarray(start, dtype=np.float64)[None], self.points])
        if t >= times[-1]:
            return pts[-1].copy()
        if t <= 0:
            return pts[0].copy()
        k = int(np.searchsorted(times, t, side="right")) - 1
        a = (t - times[k]) / (times[k + 1] - times[k])
        return (1 - a) * pts[k] + a * pts[k + 1]


# -- throttled logging ----------------------------------------------------------------------------
@dataclass
class ThrottledLog:
    """Call ``sink(message)`` at most once per ``period`` per key; counts what it held back."""

    sink: Callable[[str], object]
    period: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, key: str, message: str) -> bool:
        """Returns whether the message was emitted."""
        self.counts[key] = self.counts.get(key, 0) + 1
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        held = self._suppressed.pop(key, 0)
        suffix = f" ({held} more like this suppressed)" if held else ""
        self._last[key] = now
        self.sink(message + suffix)
        return True

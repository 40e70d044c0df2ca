"""Message <-> numpy conversions that need no ROS import (testable without rclpy).

Functions take the message's fields (or any object with the same attribute names), so the
planner node passes ``sensor_msgs/Image`` and ``sensor_msgs/JointState`` messages directly and the
unit tests pass plain namespaces. Every malformed input raises :class:`InputError` with a message
that names what is wrong; the nodes log it (throttled) and drop the message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class InputError(ValueError):
    """A message the node cannot use; ``key`` groups repeated errors for throttled logging."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


# -- images ---------------------------------------------------------------------------------------
#: encoding -> (channels, channel order to get RGB); 8-bit encodings only
_ENCODINGS: dict[str, tuple[int, tuple[int, ...]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
SUPPORTED_ENCODINGS = tuple(sorted(_ENCODINGS))
#: default bound on accepted images (a 4K frame is 8.3 MP); larger ones are dropped, not resized
MAX_PIXELS = 4096 * 4096


class ImageLike(Protocol):
    height: int
    width: int
    encoding: str
    step: int
    data: Any


def image_to_rgb(msg: ImageLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) -> ``H×W×3`` uint8 RGB.

    Honours ``step`` (row padding); mono8 is replicated to three channels. Raises
    :class:`InputError` for unsupported encodings, zero or huge sizes, and a ``data`` length that
    does not match ``step × height``.
    """
    enc = str(msg.encoding).lower()
    if enc not in _ENCODINGS:
        raise InputError(
            "image_encoding",
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}",
        )
    channels, order = _ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise InputError("image_size", f"image has zero size ({h}×{w})")
    if h * w > max_pixels:
        raise InputError("image_size", f"image {h}×{w} exceeds the {max_pixels}-pixel limit")
    row = w * channels
    if step < row:
        raise InputError("image_step", f"image step {step} < width×channels = {row}")
    buf = np.frombuffer(bytes(msg.data) if not _is_buffer(msg.data) else msg.data, dtype=np.uint8)
    if buf.size != step * h:
        raise InputError(
            "image_data",
            f"image data has {buf.size} bytes; {h} rows × step {step} needs {step * h}",
        )
    img = buf.reshape(h, step)[:, :row].reshape(h, w, channels)
    return np.ascontiguousarray(img[:, :, list(order)])


def _is_buffer(data: Any) -> bool:
    return isinstance(data, bytes | bytearray | memoryview | np.ndarray)


@dataclass(frozen=True)
class ImageFields:
    """What :func:`rgb_to_image_fields` fills into a ``sensor_msgs/Image``."""

    height: int
    width: int
    encoding: str
    step: int
    data: bytes


def rgb_to_image_fields(img: np.ndarray) -> ImageFields:
    """``H×W×3`` uint8 RGB -> fields of an rgb8 ``sensor_msgs/Image`` (no row padding)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected H×W×3 uint8, got {img.shape} {img.dtype}")
    h, w, _ = img.shape
    return ImageFields(h, w, "rgb8", 3 * w, np.ascontiguousarray(img).tobytes())


def resize_rgb(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``H×W×3`` uint8 to ``size`` = (h, w) with antialiased bilinear filtering.

    Aspect ratio is not preserved: the model sees the whole field of view, as it did in training
    when the env rendered at its own size from the same camera.
    """
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
    y = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


# -- joint states ---------------------------------------------------------------------------------
class JointStateLike(Protocol):
    name: Sequence[str]
    position: Sequence[float]
    velocity: Sequence[float]


@dataclass(frozen=True)
class JointReading:
    """Joint values of one message, for the robot's joints it names (index into robot order)."""

    index: np.ndarray  # k, positions in the robot's joint order
    position: np.ndarray  # k
    velocity: np.ndarray | None  # k, when the message has velocities
    unknown: tuple[str, ...]  # names in the message that the robot does not have


def read_joint_state(msg: JointStateLike, joint_names: Sequence[str]) -> JointReading:
    """Match a ``JointState`` to ``joint_names`` by name (the order is not guaranteed).

    Names the robot lacks are reported in ``unknown`` (a real ``/joint_states`` may also carry
    gripper joints) and ignored. Raises :class:`InputError` when the message names none of the
    robot's joints, repeats a name, has positions of another length than names, velocities of a
    length other than 0 or that, or a non-finite value for one of the robot's joints.
    """
    names = [str(n) for n in msg.name]
    pos = np.asarray(msg.position, dtype=np.float64).reshape(-1)
    vel = np.asarray(msg.velocity, dtype=np.float64).reshape(-1)
    if not names:
        raise InputError("joint_empty", "JointState has no names")
    if pos.size != len(names):
        raise InputError(
            "joint_length",
            f"JointState has {len(names)} names but {pos.size} positions",
        )
    if vel.size not in (0, len(names)):
        raise InputError(
            "joint_length", f"JointState has {len(names)} names but {vel.size} velocities"
        )
    if len(set(names)) != len(names):
        raise InputError("joint_names", f"JointState repeats joint names: {names}")
    lookup = {n: i for i, n in enumerate(joint_names)}
    known = [(k, lookup[n]) for k, n in enumerate(names) if n in lookup]
    unknown = tuple(n for n in names if n not in lookup)
    if not known:
        raise InputError(
            "joint_names",
            f"JointState names none of this robot's joints {list(joint_names)}; got {names}",
        )
    src = np.array([k for k, _ in known])
    idx = np.array([i for _, i in known])
    p = pos[src]
    v = vel[src] if vel.size else None
    if not np.all(np.isfinite(p)) or (v is not None and not np.all(np.isfinite(v))):
        raise InputError(
            "joint_nan", f"JointState has non-finite values: {dict(zip(names, pos, strict=True))}"
        )
    return JointReading(idx, p, v, unknown)


def full_joint_vector(msg: JointStateLike, joint_names: Sequence[str], what: str) -> np.ndarray:
    """Positions for every joint in ``joint_names`` order (a goal must name them all)."""
    reading = read_joint_state(msg, joint_names)
    if reading.unknown:
        raise InputError(
            f"{what}_names",
            f"{what} names unknown joints {list(reading.unknown)}; expected {list(joint_names)}",
        )
    if reading.index.size != len(joint_names):
        missing = sorted(set(joint_names) - {str(n) for n in msg.name})
        raise InputError(f"{what}_names", f"{what} lacks joints {missing}")
    out = np.empty(len(joint_names))
    out[reading.index] = reading.position
    return out


def finite_vector(values: Sequence[float] | np.ndarray, size: int, what: str) -> np.ndarray:
    """A length-``size`` finite float vector or :class:`InputError`."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != size:
        raise InputError(f"{what}_length", f"{what} has {arr.size} values, expected {size}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{what}_nan", f"{what} has non-finite values: {arr.tolist()}")
    return arr


# -- time -----------------------------------------------------------------------------------------
def seconds_to_duration(t: float) -> tuple[int, int]:
    """Seconds -> (sec, nanosec) as in ``builtin_interfaces/Duration``."""
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"duration must be finite and >= 0, got {t}")
    ns = round(t * 1e9)
    return ns // 1_000_000_000, ns % 1_000_000_000


def duration_to_seconds(sec: int, nanosec: int) -> float:
    return float(sec) + float(nanosec) * 1e-9

"""Image and joint-state conversions of the ROS nodes (ros_nodes.conversions), without ROS."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ros_nodes.conversions import (
    InputError,
    duration_to_seconds,
    full_joint_vector,
    image_to_rgb,
    read_joint_state,
    resize_rgb,
    rgb_to_image_fields,
    seconds_to_duration,
)


def _img(h: int, w: int, enc: str, step: int, data: bytes) -> SimpleNamespace:
    return SimpleNamespace(height=h, width=w, encoding=enc, step=step, data=data)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def test_rgb8_and_bgr8_round_trip(rgb: np.ndarray) -> None:
    f = rgb_to_image_fields(rgb)
    assert (f.height, f.width, f.encoding, f.step) == (5, 7, "rgb8", 21)
    np.testing.assert_array_equal(image_to_rgb(f), rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1]).tobytes()
    np.testing.assert_array_equal(image_to_rgb(_img(5, 7, "bgr8", 21, bgr)), rgb)


def test_mono8_replicates_and_rgba_drops_alpha(rgb: np.ndarray) -> None:
    gray = rgb[:, :, 0]
    out = image_to_rgb(_img(5, 7, "mono8", 7, gray.tobytes()))
    assert out.shape == (5, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(image_to_rgb(_img(5, 7, "rgba8", 28, rgba.tobytes())), rgb)


def test_step_padding_is_skipped(rgb: np.ndarray) -> None:
    padded = np.zeros((5, 24), dtype=np.uint8)  # 21 bytes of pixels + 3 of padding per row
    padded[:, :21] = rgb.reshape(5, 21)
    padded[:, 21:] = 255
    np.testing.assert_array_equal(image_to_rgb(_img(5, 7, "rgb8", 24, padded.tobytes())), rgb)


@pytest.mark.parametrize(
    ("msg", "key"),
    [
        (_img(2, 2, "16UC1", 4, bytes(8)), "image_encoding"),
        (_img(2, 2, "yuv422", 4, bytes(8)), "image_encoding"),
        (_img(0, 2, "rgb8", 6, b""), "image_size"),
        (_img(2, 2, "rgb8", 6, bytes(11)), "image_data"),  # one byte short
        (_img(2, 2, "rgb8", 6, bytes(13)), "image_data"),  # one byte too many
        (_img(2, 2, "rgb8", 5, bytes(10)), "image_step"),  # step < width*3
        (_img(3000, 3000, "mono8", 3000, b""), "image_size"),  # over max_pixels below
    ],
)
def test_bad_images_raise_clear_errors(msg: SimpleNamespace, key: str) -> None:
    with pytest.raises(InputError) as e:
        image_to_rgb(msg, max_pixels=1_000_000)
    assert e.value.key == key
    assert str(e.value)


def test_resize_any_size_to_model_input() -> None:
    img = np.zeros((120, 160, 3), dtype=np.uint8)
    img[:, 80:] = 200
    out = resize_rgb(img, (64, 64))
    assert out.shape == (64, 64, 3)
    assert out.dtype == np.uint8
    assert out[:, :30].max() == 0
    assert out[:, 34:].min() == 200
    same = resize_rgb(out, (64, 64))
    assert same is out
    up = resize_rgb(np.full((2, 3, 3), 7, np.uint8), (10, 12))
    assert up.shape == (10, 12, 3)
    assert np.all(up == 7)


def test_rgb_to_image_fields_rejects_non_rgb() -> None:
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        rgb_to_image_fields(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        rgb_to_image_fields(np.zeros((4, 4, 3), np.float32))


JOINTS = ("a", "b", "c")


def _js(names: list[str], pos: list[float], vel: list[float] | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=names, position=pos, velocity=vel or [])


def test_joint_state_matched_by_name_not_order() -> None:
    r = read_joint_state(
        _js(["c", "a", "gripper", "b"], [3.0, 1.0, 9.0, 2.0], [0.3, 0.1, 0.9, 0.2]), JOINTS
    )
    q = np.zeros(3)
    q[r.index] = r.position
    qd = np.zeros(3)
    assert r.velocity is not None
    qd[r.index] = r.velocity
    np.testing.assert_allclose(q, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(qd, [0.1, 0.2, 0.3])
    assert r.unknown == ("gripper",)
    partial = read_joint_state(_js(["b"], [5.0]), JOINTS)  # partial messages are merged by the node
    assert partial.index.tolist() == [1]
    assert partial.velocity is None


@pytest.mark.parametrize(
    ("msg", "key"),
    [
        (_js([], []), "joint_empty"),
        (_js(["a", "b"], [1.0]), "joint_length"),
        (_js(["a", "b"], [1.0, 2.0], [1.0]), "joint_length"),
        (_js(["a", "a"], [1.0, 2.0]), "joint_names"),
        (_js(["x", "y"], [1.0, 2.0]), "joint_names"),
        (_js(["a", "b"], [1.0, float("nan")]), "joint_nan"),
        (_js(["a", "b"], [1.0, 2.0], [0.0, float("inf")]), "joint_nan"),
    ],
)
def test_bad_joint_states(msg: SimpleNamespace, key: str) -> None:
    with pytest.raises(InputError) as e:
        read_joint_state(msg, JOINTS)
    assert e.value.key == key


def test_goal_needs_every_joint_and_no_strangers() -> None:
    np.testing.assert_allclose(
        full_joint_vector(_js(["b", "c", "a"], [2.0, 3.0, 1.0]), JOINTS, "goal"), [1, 2, 3]
    )
    with pytest.raises(InputError, match="lacks joints"):
        full_joint_vector(_js(["a", "b"], [1.0, 2.0]), JOINTS, "goal")
    with pytest.raises(InputError, match="unknown joints"):
        full_joint_vector(_js(["a", "b", "c", "d"], [1.0, 2.0, 3.0, 4.0]), JOINTS, "goal")


def test_durations() -> None:
    assert seconds_to_duration(1.25) == (1, 250_000_000)
    assert duration_to_seconds(*seconds_to_duration(0.04)) == pytest.approx(0.04)
    with pytest.raises(ValueError, match="finite and >= 0"):
        seconds_to_duration(-1.0)

"""Contract every registered env honours, through the base API only. Optional hooks:
``goal_state()`` (env state with the goal achieved) and ``evaluate()`` (``(distance, success)``
of the current state); tests needing them skip envs without them."""

from __future__ import annotations

import numpy as np
import pytest

from wm_planning import envs

NAMES = envs.available()


@pytest.fixture(scope="module", params=NAMES)
def env(request: pytest.FixtureRequest):
    e = envs.make(request.param, pixels=True)
    yield e
    e.close()


def test_observations_match_spec(env) -> None:
    obs = env.reset(seed=0)
    assert set(obs) == set(env.spec.obs_shapes)
    for k, shape in env.spec.obs_shapes.items():
        assert obs[k].shape == shape, k
        assert obs[k].dtype == (np.uint8 if k == "pixels" else np.float32), k
    obs, reward, terminated, truncated, info = env.step(np.zeros(env.spec.action_dim))
    for k, shape in env.spec.obs_shapes.items():
        assert obs[k].shape == shape
    assert np.isfinite(reward)
    assert isinstance(info["success"], bool)
    assert not terminated
    assert not truncated


def _episode(env, seed: int, steps: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(123)
    out = [env.reset(seed=seed)["state"]]
    for _ in range(steps):
        out.append(env.step(rng.uniform(-1, 1, env.spec.action_dim))[0]["state"])
    return out


def test_seeding(env) -> None:
    a, b = _episode(env, 3), _episode(env, 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = env.reset(seed=4)["state"]
    assert not np.array_equal(a[0], c)


def test_action_clamping_and_nan(env) -> None:
    env.reset(seed=1)
    s = env.get_state()
    high = np.asarray(env.spec.action_high)
    o1, r1, *_ = env.step(high)
    env.set_state(s)
    o2, r2, *_ = env.step(5 * high)
    np.testing.assert_array_equal(o1["state"], o2["state"])
    assert r1 == r2
    bad = np.zeros(env.spec.action_dim)
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        env.step(bad)


def test_state_round_trip(env) -> None:
    env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(3):
        env.step(rng.uniform(-1, 1, env.spec.action_dim))
    s = env.get_state()
    a = rng.uniform(-1, 1, env.spec.action_dim)
    o1, r1, *_ = env.step(a)
    s1 = env.get_state()
    env.step(rng.uniform(-1, 1, env.spec.action_dim))  # wander off, then restore
    env.set_state(s)
    np.testing.assert_array_equal(env.get_state(), s)
    o2, r2, *_ = env.step(a)
    np.testing.assert_array_equal(env.get_state(), s1)
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])
    assert r1 == r2


def _goal_state_or_skip(env) -> np.ndarray:
    try:
        return env.goal_state()
    except NotImplementedError as err:
        pytest.skip(str(err))


def test_goal_image_renders_goal_state(env) -> None:
    env.reset(seed=5)
    _goal_state_or_skip(env)
    s = env.get_state()
    before = env.render()
    goal_img = env.goal_image()
    np.testing.assert_array_equal(env.get_state(), s)  # goal_image leaves the state alone
    env.set_state(env.goal_state())
    np.testing.assert_array_equal(goal_img, env.render())
    assert not np.array_equal(goal_img, before)
    env.set_state(s)


def test_success_iff_threshold(env) -> None:
    thr = env.spec.success_threshold
    env.reset(seed=6)
    try:
        env.evaluate()
    except NotImplementedError as err:
        pytest.skip(str(err))
    start, goal = env.get_state(), _goal_state_or_skip(env)
    env.set_state(goal)
    d_goal, ok = env.evaluate()
    assert d_goal <= 1e-6
    assert ok
    env.set_state(start)
    d0, ok0 = env.evaluate()
    assert d0 > thr
    assert not ok0
    # states between start and goal: success exactly when distance <= threshold, both occur
    seen = set()
    for w in np.linspace(0, 1, 41):
        env.set_state((1 - w) * start + w * goal)
        d, ok = env.evaluate()
        assert ok == (d <= thr)
        seen.add(ok)
    assert seen == {True, False}
    # and a step reports the same criterion in info
    env.set_state(goal)
    _, _, _, _, info = env.step(np.zeros(env.spec.action_dim))
    assert info["success"] == (info["distance"] <= thr)


def test_arm_goal_observation_is_the_goal_configuration() -> None:
    """DINO-WM scores a goal's image and proprioception: the arm's goal observation is the goal
    joint configuration at rest, rendered like ``goal_image``, and leaves the env untouched."""
    env = envs.make("planar-goal_reach", pixels=True, image_size=(32, 32))
    env.reset(seed=5)
    before = env.get_state()
    goal = env.goal_observation((32, 32))
    n = env.robot.n_joints
    np.testing.assert_allclose(goal["proprio"][:n], env.target, atol=1e-6)
    np.testing.assert_allclose(goal["proprio"][n:], 0.0, atol=1e-6)
    np.testing.assert_array_equal(goal["pixels"], env.goal_image(size=(32, 32)))
    np.testing.assert_array_equal(env.get_state(), before)
    env.close()

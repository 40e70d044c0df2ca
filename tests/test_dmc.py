"""DMC wrappers: every task loads with the documented shapes, determinism, exact state round trip."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import pytest

from wm_planning import envs
from wm_planning.config import load_group
from wm_planning.envs.dmc import TASKS

NAMES = [f"dmc-{n}" for n in TASKS]


@pytest.mark.parametrize("name", NAMES)
def test_task_shapes_determinism_and_state_round_trip(name: str) -> None:
    env = envs.make(name, pixels=True, image_size=(32, 48))
    try:
        spec = env.spec
        assert spec.episode_length * spec.action_repeat == 1000
        obs = env.reset(seed=5)
        assert set(obs) == {"state", "proprio", "pixels"}
        for k, shape in spec.obs_shapes.items():
            assert obs[k].shape == shape
        assert obs["pixels"].shape == (32, 48, 3)
        assert obs["pixels"].dtype == np.uint8
        assert obs["state"].dtype == np.float32
        assert obs["proprio"].dtype == np.float32
        acts = np.random.default_rng(0).uniform(-1, 1, (8, spec.action_dim))
        first = [env.step(a) for a in acts[:3]]
        state = env.get_state()
        a_run = [env.step(a) for a in acts[3:]]
        env.set_state(state)
        b_run = [env.step(a) for a in acts[3:]]
        for (oa, ra, *_), (ob, rb, *_) in zip(a_run, b_run, strict=True):
            assert ra == rb
            for k in oa:
                np.testing.assert_array_equal(oa[k], ob[k])
        # same seed, same actions: same episode
        obs2 = env.reset(seed=5)
        np.testing.assert_array_equal(obs2["state"], obs["state"])
        again = [env.step(a) for a in acts[:3]]
        for (oa, ra, *_), (ob, rb, *_) in zip(first, again, strict=True):
            assert ra == rb
            np.testing.assert_array_equal(oa["state"], ob["state"])
        assert not np.array_equal(env.reset(seed=6)["state"], obs["state"])
    finally:
        env.close()


def test_yaml_presets_match_tasks() -> None:
    for name, t in TASKS.items():
        preset = load_group("task", "dmc_" + name.replace("-", "_"))
        assert preset["env"] == f"dmc-{name}"
        assert preset["action_repeat"] == t.action_repeat
        assert preset["success_threshold"] == t.success_threshold


def test_episode_end_success_and_bad_input() -> None:
    env = envs.make("dmc-reacher-easy", action_repeat=250)
    env.reset(seed=0)
    assert env.spec.episode_length == 4
    for _ in range(3):
        _, r, term, trunc, info = env.step(np.zeros(2))
        assert isinstance(info["success"], bool)
        assert not term
        assert not trunc
        assert info["success"] == (info["last_reward"] >= 1.0)
        assert 0 <= r <= 250
    _, _, _, trunc, _ = env.step(np.zeros(2))
    assert trunc
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(np.zeros(2))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="state must have shape"):
        env.set_state(np.zeros(3))
    with pytest.raises(KeyError, match="unknown DMC task"):
        envs.dmc.DMCEnv("reacher-impossible")
    with pytest.raises(ValueError, match="action_repeat"):
        envs.make("dmc-reacher-easy", action_repeat=0)


def test_goal_images() -> None:
    env = envs.make("dmc-reacher-easy")
    env.reset(seed=1)
    before = env.get_state()
    goal = env.goal_image(size=(64, 64))
    np.testing.assert_array_equal(env.get_state(), before)  # the simulation is untouched
    assert goal.shape == (64, 64, 3)
    assert not np.array_equal(goal, env.render(size=(64, 64)))
    d, m = env._scratch, env.model
    gap = d.geom_xpos[m.geom("finger").id, :2] - d.geom_xpos[m.geom("target").id, :2]
    assert np.linalg.norm(gap) < 1e-4  # the finger sits on the target in the goal image
    with pytest.raises(NotImplementedError, match="no goal configuration"):
        envs.make("dmc-cheetah-run").goal_image()

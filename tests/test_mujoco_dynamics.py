"""MuJoCo physics as the rollout model: a batched rollout equals stepping the env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wm_planning import envs
from wm_planning.envs.arm import ARM_TASKS
from wm_planning.models.mujoco_dynamics import MujocoDynamics

NAMES = [f"{r}-{t}" for r, t in ARM_TASKS]


@pytest.mark.parametrize("name", NAMES)
def test_rollout_equals_sequential_steps(name: str) -> None:
    env = envs.make(name)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(2):
        env.step(rng.uniform(-1, 1, env.spec.action_dim))
    state = env.get_state()
    dyn = MujocoDynamics(env, nthread=2)
    b, h = 3, 6
    # some actions outside the box: the model must clamp them like the env does
    actions = torch.as_tensor(
        rng.uniform(-1.5, 1.5, (b, h, env.spec.action_dim)), dtype=torch.float32
    )
    ro = dyn.rollout(state, actions)
    assert ro.latents is not None
    assert ro.rewards is not None
    assert ro.latents.shape == (b, h, env.nphys)
    assert ro.rewards.shape == (b, h)
    costs = dyn.objective(state)(actions)
    assert costs.shape == (b,)
    assert costs.dtype == actions.dtype
    for i in range(b):
        env.set_state(state)
        step_costs = []
        for t in range(h):
            _, reward, _, _, info = env.step(actions[i, t].numpy())
            s = env.split_state(env.get_state())
            np.testing.assert_allclose(ro.latents[i, t].numpy(), s["physics"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(ro.extras["q_ref"][i, t].numpy(), s["q_ref"], atol=1e-12)
            np.testing.assert_allclose(
                ro.extras["distance"][i, t].item(), info["distance"], atol=1e-9
            )
            step_costs.append(-reward)
        np.testing.assert_allclose(ro.extras["cost"][i].numpy(), step_costs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(costs[i].item(), sum(step_costs), rtol=1e-5)
    # the env's own simulation is untouched by planning
    env.set_state(state)
    np.testing.assert_array_equal(env.get_state(), state)
    dyn.close()


def test_bad_inputs() -> None:
    env = envs.make("planar-reach")
    dyn = MujocoDynamics(env, nthread=1)
    with pytest.raises(ValueError, match="B×H×A"):
        dyn.rollout(env.get_state(), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError, match="NaN"):
        dyn.rollout(env.get_state(), torch.full((2, 3, 3), float("nan")))
    with pytest.raises(ValueError, match="state must have shape"):
        dyn.rollout(env.get_state()[:-1], torch.zeros(2, 3, 3))
    with pytest.raises(TypeError):
        MujocoDynamics(object())
    np.testing.assert_array_equal(dyn.encode({}), env.get_state())

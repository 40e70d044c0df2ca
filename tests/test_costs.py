"""Cost seam: each cost computes what it says, and model/cost mismatches fail clearly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor

from wm_planning import costs
from wm_planning.models.base import Rollout, WorldModel


class PointMass(WorldModel):
    """x_{t+1} = x_t + a_t; reward -|x|², latent = x. A tiny exact model for the seam."""

    provides = frozenset({"latents", "rewards"})

    def encode(self, obs: Mapping[str, Any]) -> Tensor:
        return torch.as_tensor(obs["state"], dtype=torch.float32)

    def rollout(self, state: Tensor, actions: Tensor) -> Rollout:
        x = state.reshape(1, 1, -1) + actions.cumsum(1)  # B×H×A
        return Rollout(latents=x, rewards=-(x**2).sum(-1))


def test_reward_cost_discount_and_value() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    r = Rollout(rewards=rewards, terminal_value=torch.tensor([10.0]))
    assert costs.make("reward")(r).item() == pytest.approx(-6.0)
    c = costs.make("reward", discount=0.5, value_weight=1.0)
    assert c(r).item() == pytest.approx(-(1 + 1 + 0.75 + 0.125 * 10))


def test_goal_latent_cost_final_and_every_step() -> None:
    z = torch.zeros(2, 3, 4)
    z[1, -1] = 1.0
    goal = torch.ones(4)
    final = costs.GoalLatentCost(goal)(Rollout(latents=z))
    assert final.tolist() == [1.0, 0.0]
    every = costs.GoalLatentCost(goal, every_step=True)(Rollout(latents=z))
    # sample 1: distances (1, 1, 0) weighted (1, 2, 3)/6
    assert every[1].item() == pytest.approx(0.5)


def test_goal_pixel_cost_checks_size() -> None:
    frames = torch.rand(2, 3, 3, 8, 8)
    cost = costs.GoalPixelCost(frames[0, -1])
    out = cost(Rollout(frames=frames))
    assert out[0].item() == 0.0
    assert out[1].item() > 0.0
    with pytest.raises(ValueError, match="does not match"):
        costs.GoalPixelCost(torch.rand(3, 16, 16))(Rollout(frames=frames))


def test_missing_rollout_field_is_a_clear_error() -> None:
    model = PointMass()
    with pytest.raises(ValueError, match="does not predict"):
        costs.make_objective(
            model, model.encode({"state": [0.0]}), costs.GoalPixelCost(torch.zeros(3, 2, 2))
        )
    with pytest.raises(KeyError, match="uncertainty"):
        costs.UncertaintyPenalty(costs.RewardCost())(Rollout(rewards=torch.zeros(1, 2)))


def test_uncertainty_penalty_adds_weighted_sum() -> None:
    r = Rollout(rewards=torch.zeros(2, 2), uncertainty=torch.tensor([[1.0, 1.0], [0.0, 0.5]]))
    out = costs.make("uncertainty_penalty", base=costs.RewardCost(), weight=2.0)(r)
    assert out.tolist() == [4.0, 1.0]


def test_registry_lists_costs() -> None:
    assert {"reward", "goal_latent", "goal_pixels", "uncertainty_penalty"} <= set(costs.available())
    with pytest.raises(KeyError, match="unknown cost"):
        costs.make("nope")


@pytest.mark.parametrize("cost_name", ["reward", "goal_latent"])
def test_model_plans_with_every_planner(cost_name: str) -> None:
    """Any model pairs with any planner and any cost its outputs support."""
    from wm_planning import planners

    model = PointMass()
    state = model.encode({"state": [0.8, -0.6]})
    cost = (
        costs.make(cost_name)
        if cost_name == "reward"
        else costs.make(cost_name, goal=torch.zeros(2))
    )
    objective = costs.make_objective(model, state, cost)
    zero = objective(torch.zeros(1, 4, 2)).item()
    for name in planners.available():
        plan = planners.make(name, horizon=4, action_low=[-1.0, -1.0], action_high=[1.0, 1.0])
        result = plan(objective, generator=torch.Generator().manual_seed(0))
        assert result.actions.shape == (4, 2)
        assert result.cost.item() < 0.5 * zero, f"{name} did not improve on doing nothing"

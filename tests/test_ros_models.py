"""Planner-node model adapters (ros_nodes.models), without ROS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros_nodes.models import Goal, Observation, available_models, make_model


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    m = make_model("mujoco", robot="planar", image_size=(32, 32))
    yield m
    m.close()


def test_registry() -> None:
    assert "mujoco" in available_models()
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        make_model("nope", robot="planar")
    with pytest.raises(ValueError, match="no checkpoint"):
        make_model("mujoco", robot="planar", checkpoint="model.pt")


def test_joint_goal_objective_prefers_moving_towards_the_goal(model) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(model.robot.home)
    obs = Observation(q, np.zeros(3), q)
    objective = model.objective(obs, Goal("joints", q + np.array([0.5, 0.0, 0.0])))
    towards = torch.zeros(1, 8, 3)
    towards[..., 0] = 1.0
    costs = objective(torch.cat([towards, -towards, torch.zeros(1, 8, 3)]))
    assert costs.shape == (3,)
    assert costs[0] < costs[2] < costs[1]


def test_pose_and_image_goals(model) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(model.robot.home)
    obs = Observation(q, np.zeros(3), q)
    actions = torch.zeros(4, 5, 3)
    actions[1, :, 0] = 1.0
    assert model.objective(obs, Goal("pose", np.array([0.3, 0.2, 0.1])))(actions).shape == (4,)
    here = model.imagine(obs, Goal("joints", q), np.zeros((5, 3)))
    assert here.shape == (32, 32, 3)
    costs = model.objective(obs, Goal("image", here))(actions)
    assert costs[0] < costs[1]  # staying put matches the picture of staying put
    with pytest.raises(ValueError, match="goal image"):
        model.objective(obs, Goal("image", np.zeros((8, 8, 3), np.uint8)))


def test_commands_integrate_velocity_actions_within_limits(model) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(model.robot.upper) - 0.01
    pts = model.commands(q, np.ones((4, 3)))
    assert pts.shape == (4, 3)
    assert np.all(pts <= model.robot.upper + 1e-12)
    step = np.asarray(model.robot.velocity_limits) * model.dt
    down = model.commands(q, -np.ones((2, 3)))
    np.testing.assert_allclose(down[0], q - step)
    np.testing.assert_allclose(down[1], q - 2 * step)

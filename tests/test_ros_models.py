"""Planner-node model adapters (ros_nodes.models), without ROS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ros_nodes.models import Goal, GoalUnsupported, Observation, available_models, make_model


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


# -- learned checkpoints ---------------------------------------------------------------------------
PLANNER_OPTIONS = {"num_samples": 16, "num_elites": 4, "iterations": 2}


def save_tiny_checkpoint(
    path: Path,
    env_name: str = "planar-reach",
    model: str = "tdmpc2_tiny",
    train_extra: dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """An untrained tiny model saved as ``wm-plan train`` saves it. Its weights are perturbed:
    untrained reward and value heads start at zero, which would make every cost equal."""
    from wm_planning.config import load_group
    from wm_planning.models.registry import ModelSpec, model_from_config
    from wm_planning.training import make_env, save_checkpoint

    env = make_env(env_name, False, 64)  # pixels' shape added by hand: no renderer needed
    shapes = dict(env.spec.obs_shapes)
    env.close()
    cfg = {**load_group("model", model), **options}
    pixels = cfg["obs"] == "pixels"
    if pixels:
        shapes["pixels"] = (64, 64, 3)
    torch.manual_seed(0)
    net = model_from_config(cfg, ModelSpec(shapes, 3, 100))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    train = {
        "model": cfg,
        "env": env_name,
        "pixels": pixels,
        "image_size": 64,
        "planner": None,
        "planner_options": PLANNER_OPTIONS,
        "num_prior": 4,
        "replan_every": 1,
        **(train_extra or {}),
    }
    return save_checkpoint(path, net, config=train, step=10)


@pytest.fixture(scope="module")
def reach_ck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ck") / "reach.pt")


@pytest.fixture(scope="module")
def learned(reach_ck: Path):  # type: ignore[no-untyped-def]
    m = make_model("checkpoint", robot="planar", checkpoint=str(reach_ck))
    yield m
    m.close()


def _env_inputs(env: Any) -> tuple[Observation, Goal]:
    """The node's view of an ArmEnv's current state: joints, velocities, servo target, and the
    reach target as a pose goal."""
    q = env.data.qpos[env._qadr].copy()
    qd = env.data.qvel[env._dadr].copy()
    return Observation(q, qd, env.q_ref.copy()), Goal("pose", env.target.copy())


def test_checkpoint_adapter_matches_the_eval_policy(learned, reach_ck: Path) -> None:  # type: ignore[no-untyped-def]
    from wm_planning import costs, planners
    from wm_planning.config import load_group
    from wm_planning.control import Controller
    from wm_planning.eval.policies import CheckpointPolicy, PolicyConfig
    from wm_planning.training import make_env

    assert learned.goal_kinds == {"pose"}
    assert not learned.needs_image
    assert learned.dt == pytest.approx(0.04)
    assert learned.action_low == (-1.0,) * 3
    assert learned.action_high == (1.0,) * 3
    policy = CheckpointPolicy(PolicyConfig(policy="checkpoint", checkpoint=str(reach_ck)))
    choice = learned.default_planner()
    assert (choice.name, dict(choice.options)) == ("tdmpc2_mppi", PLANNER_OPTIONS)
    assert policy.planner_name == choice.name

    # A mid-episode state (moving arm, servo target ahead of it) seen by the eval env and by
    # the node: the same observation vector, so the same costs and the same plan.
    env = make_env("planar-reach", False, 64)
    obs_env = env.reset(seed=3)
    for a in ([1.0, -0.5, 0.3], [0.8, -1.0, 0.5]):
        obs_env, *_ = env.step(np.array(a))
    obs, goal = _env_inputs(env)
    assert np.abs(obs.qd).max() > 0.1
    assert not np.allclose(obs.q, obs.q_ref)
    np.testing.assert_array_equal(learned.observation(obs, goal.value)["state"], obs_env["state"])

    actions = torch.rand(32, 3, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    state = policy.model.observe(None, None, obs_env)
    expected = costs.make_objective(policy.model, state, policy.agent.cost)(actions)
    got = learned.objective(obs, goal)(actions)
    assert got.shape == (32,)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.std() > 0  # the perturbed model tells sequences apart

    # Planning as the node does (the model's planner and prior) = the eval Agent's first action.
    horizon = int(load_group("planner", choice.name)["horizon"])
    planner = planners.from_config(
        {**load_group("planner", choice.name), **choice.options},
        action_low=learned.action_low,
        action_high=learned.action_high,
    )
    ctrl = Controller(planner, generator=torch.Generator().manual_seed(7))
    objective = learned.objective(obs, goal)
    prior = learned.prior(obs, goal, horizon, ctrl.generator)
    assert prior is not None
    assert prior.shape == (4, horizon, 3)
    plan = ctrl.replan(objective, prior).actions
    policy.reset(None, 7)  # type: ignore[arg-type]  # reseeds the agent's generator
    np.testing.assert_allclose(policy.act(obs_env, None), plan[0].double().numpy(), atol=1e-6)  # type: ignore[arg-type]
    env.close()
    policy.close()


def test_checkpoint_goal_is_the_reach_target(learned) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(learned.robot.home)
    obs = Observation(q, np.zeros(3), q)
    actions = torch.rand(16, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = learned.objective(obs, Goal("pose", np.array([0.3, 0.1, 0.1])))(actions)
    again = learned.objective(obs, Goal("pose", np.array([0.3, 0.1, 0.1])))(actions)
    b = learned.objective(obs, Goal("pose", np.array([-0.2, 0.3, 0.15])))(actions)
    torch.testing.assert_close(a, again, rtol=0, atol=0)  # deterministic
    assert not torch.allclose(a, b)  # the goal is an input of the model
    state = learned.observation(obs, np.array([-0.2, 0.3, 0.15]))["state"]
    np.testing.assert_allclose(state[-3:], [-0.2, 0.3, 0.15], rtol=1e-6)  # reach: target last
    with pytest.raises(GoalUnsupported, match="not joints"):
        learned.objective(obs, Goal("joints", q))
    with pytest.raises(ValueError, match="pose goal must be 3"):
        learned.objective(obs, Goal("pose", np.zeros(2)))
    assert learned.imagine(obs, Goal("pose", np.zeros(3)), np.zeros((3, 3))) is None


def test_checkpoint_commands_within_limits(learned) -> None:  # type: ignore[no-untyped-def]
    q = np.asarray(learned.robot.upper) - 0.01
    pts = learned.commands(q, np.array([[1.0, 1.0, 1.0], [5.0, -1.0, 0.0]]))
    assert pts.shape == (2, 3)
    assert np.all(pts <= learned.robot.upper + 1e-12)
    assert np.all(pts >= learned.robot.lower - 1e-12)
    # first action saturates every joint at its upper limit (5.0 is clipped to the box's 1.0)
    step = np.asarray(learned.robot.velocity_limits) * learned.dt
    upper = np.asarray(learned.robot.upper)
    np.testing.assert_allclose(pts[0], upper)
    np.testing.assert_allclose(pts[1], upper - np.array([0.0, step[1], 0.0]))


def test_checkpoint_goal_reach_takes_joint_goals(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "goal_reach.pt", "planar-goal_reach", "planet_tiny")
    m = make_model("checkpoint", robot="planar", checkpoint=str(path))
    try:
        assert m.goal_kinds == {"joints"}
        choice = m.default_planner()
        assert choice is not None
        assert choice.name == "planet_cem"
        q = np.asarray(m.robot.home)
        obs = Observation(q, np.zeros(3), q)
        goal = Goal("joints", q + 0.5)
        actions = torch.rand(8, 4, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
        costs = m.objective(obs, goal)(actions)
        assert costs.shape == (8,)
        assert torch.isfinite(costs).all()
        assert not torch.allclose(costs, m.objective(obs, Goal("joints", q - 0.5))(actions))
        assert m.prior(obs, goal, 4, torch.Generator()) is None  # PlaNet has no policy
        with pytest.raises(GoalUnsupported):
            m.objective(obs, Goal("pose", np.zeros(3)))
    finally:
        m.close()


def test_checkpoint_from_pixels_plans_from_the_camera(tmp_path: Path) -> None:
    path = save_tiny_checkpoint(tmp_path / "pixels.pt", obs="pixels")
    m = make_model("checkpoint", robot="planar", checkpoint=str(path))
    try:
        assert m.needs_image
        assert m.image_size == (64, 64)
        assert m.goal_kinds == {"image"}
        rng = np.random.default_rng(0)
        q = np.asarray(m.robot.home)
        cam = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        goal = Goal("image", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        actions = torch.rand(8, 3, 3) * 2 - 1
        costs = m.objective(Observation(q, np.zeros(3), q, cam), goal)(actions)
        assert costs.shape == (8,)
        assert torch.isfinite(costs).all()
        other = m.objective(Observation(q, np.zeros(3), q, cam[::-1].copy()), goal)(actions)
        assert not torch.allclose(costs, other)  # the camera image is the model's input
        with pytest.raises(ValueError, match="camera image missing"):
            m.objective(Observation(q, np.zeros(3), q), goal)
        with pytest.raises(ValueError, match="camera image must be"):
            m.objective(Observation(q, np.zeros(3), q, cam[:32]), goal)
        with pytest.raises(GoalUnsupported, match="not pose"):
            m.objective(Observation(q, np.zeros(3), q, cam), Goal("pose", np.zeros(3)))
    finally:
        m.close()


def test_checkpoint_errors(reach_ck: Path, tmp_path: Path) -> None:
    from wm_planning.training import CheckpointError, load_checkpoint, save_checkpoint

    assert "checkpoint" in available_models()
    with pytest.raises(ValueError, match="needs the checkpoint"):
        make_model("checkpoint", robot="planar")
    with pytest.raises(CheckpointError, match=r"nope\.pt not found"):
        make_model("checkpoint", robot="planar", checkpoint=str(tmp_path / "nope.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.pt is corrupted"):
        make_model("checkpoint", robot="planar", checkpoint=str(junk))
    with pytest.raises(ValueError, match=r"robot 'planar'.*node's robot is 'panda'"):
        make_model("checkpoint", robot="panda", checkpoint=str(reach_ck))
    ck = load_checkpoint(reach_ck)
    dmc = tmp_path / "dmc.pt"
    save_checkpoint(dmc, ck.build_model(), config={**ck.config, "env": "dmc-reacher-easy"})
    with pytest.raises(ValueError, match=r"'dmc-reacher-easy'.*arm env"):
        make_model("checkpoint", robot="planar", checkpoint=str(dmc))

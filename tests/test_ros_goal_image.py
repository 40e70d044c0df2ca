"""The planner node's ``goal_image`` adapter (DINO-WM / visual foresight checkpoints), without ROS:
it must plan with exactly the objective ``wm-plan goal`` plans with, and refuse bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ros_nodes.models import Goal, GoalUnsupported, Observation, make_model
from wm_planning import envs
from wm_planning.costs import make_objective
from wm_planning.costs_visual import goal_cost
from wm_planning.training.checkpoint import CheckpointError

SIZE = (32, 32)


@pytest.fixture(scope="module")
def visual_cks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny DINO-WM and visual-foresight checkpoints trained a few steps on planar-goal_reach."""
    from wm_planning.cli import main as cli

    tmp = tmp_path_factory.mktemp("visual")
    data = tmp / "data"
    collect = ["collect", "env=planar-goal_reach", "policy=correlated", "episodes=2"]
    assert cli([*collect, f"out={data}", "pixels=true", f"image_size={SIZE[0]}"]) == 0
    out = {}
    for name, extra in (("dino_wm_conv", []), ("visual_foresight", ["model_options.channels=8"])):
        ck = tmp / f"{name}.pt"
        argv = ["train-visual", f"model={name}", f"data={data}", "steps=2", "batch_size=2"]
        assert cli([*argv, f"out={ck}", *extra]) == 0
        out[name] = ck
    return out


def _inputs(env: envs.Env, seed: int) -> tuple[dict[str, np.ndarray], Observation]:
    obs = env.reset(seed=seed)
    n = env.robot.n_joints  # type: ignore[attr-defined]
    q, qd = obs["proprio"][:n].astype(float), obs["proprio"][n:].astype(float)
    return obs, Observation(q, qd, env.q_ref.copy(), image=obs["pixels"])  # type: ignore[attr-defined]


def test_dino_adapter_plans_with_the_goal_command_objective(visual_cks: dict[str, Path]) -> None:
    from wm_planning.training.visual_checkpoint import load_checkpoint

    adapter = make_model("goal_image", robot="planar", checkpoint=str(visual_cks["dino_wm_conv"]))
    try:
        net = load_checkpoint(visual_cks["dino_wm_conv"])
        assert adapter.image_size == SIZE
        assert adapter.needs_image
        assert adapter.horizon_multiple == net.config.frameskip == 5
        choice = adapter.default_planner()
        assert choice is not None
        assert choice.name == "icem"
        assert choice.options["horizon"] == 15  # 3 model steps
        # plans keep to the training actions' box, as `wm-plan goal` does
        from wm_planning.training.visual_checkpoint import load_visual_checkpoint

        box = load_visual_checkpoint(visual_cks["dino_wm_conv"]).action_box
        assert box is not None
        assert np.allclose(adapter.action_low, np.clip(box["low"], -1, 1))
        assert np.allclose(adapter.action_high, np.clip(box["high"], -1, 1))
        env = envs.make("planar-goal_reach", pixels=True, image_size=SIZE)
        obs, o = _inputs(env, 1000)
        goal_obs = env.goal_observation(SIZE)  # type: ignore[attr-defined]
        target = env.target.copy()  # type: ignore[attr-defined]
        env.close()
        state = net.encode({"pixels": obs["pixels"][None], "proprio": obs["proprio"][None]})
        actions = torch.rand(6, 15, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1

        # joints goal: the env renders the goal; DINO-WM adds the goal proprioception (weight 1)
        want = make_objective(
            net,
            state,
            goal_cost(net, goal_obs["pixels"], goal_obs["proprio"], every_step=True,
                      proprio_weight=1.0),
        )(actions)  # fmt: skip
        got = adapter.objective(o, Goal("joints", target))(actions)
        assert torch.allclose(got, want, atol=1e-5)
        pixels, proprio = adapter.goal_image(Goal("joints", target))  # type: ignore[attr-defined]
        assert np.array_equal(pixels, goal_obs["pixels"])
        assert np.allclose(proprio, goal_obs["proprio"])

        # image goal: the picture alone
        want = make_objective(
            net, state, goal_cost(net, goal_obs["pixels"], None, every_step=True)
        )(actions)
        got = adapter.objective(o, Goal("image", goal_obs["pixels"]))(actions)
        assert torch.allclose(got, want, atol=1e-5)

        # the decoder pictures the end of a plan; commands stay inside the joint limits
        pic = adapter.imagine(o, Goal("image", goal_obs["pixels"]), actions[0].numpy())
        assert pic is not None
        assert pic.shape == (*SIZE, 3)
        assert pic.dtype == np.uint8
        cmd = adapter.commands(o.q_ref, np.full((15, 3), 5.0))
        assert cmd.shape == (15, 3)
        assert np.all(cmd <= np.asarray(adapter.robot.upper) + 1e-9)

        with pytest.raises(GoalUnsupported, match="not pose"):
            adapter.objective(o, Goal("pose", np.zeros(3)))
        with pytest.raises(ValueError, match=r"camera image must be \(32, 32, 3\) uint8"):
            adapter.objective(
                Observation(o.q, o.qd, o.q_ref, np.zeros((16, 16, 3), np.uint8)),
                Goal("joints", target),
            )
        with pytest.raises(ValueError, match="camera image missing"):
            adapter.objective(Observation(o.q, o.qd, o.q_ref), Goal("joints", target))
        with pytest.raises(ValueError, match="joints goal must be 3 finite values"):
            adapter.objective(o, Goal("joints", np.array([np.nan, 0.0, 0.0])))
    finally:
        adapter.close()


def test_visual_foresight_adapter(visual_cks: dict[str, Path]) -> None:
    adapter = make_model(
        "goal_image",
        robot="planar",
        checkpoint=str(visual_cks["visual_foresight"]),
        options={"plan_blocks": 4, "planner_options": {"population": 16}},
    )
    try:
        assert adapter.horizon_multiple == 1
        choice = adapter.default_planner()
        assert choice is not None
        assert choice.options["horizon"] == 4
        assert choice.options["population"] == 16
        env = envs.make("planar-goal_reach", pixels=True, image_size=SIZE)
        _, o = _inputs(env, 1001)
        goal = env.goal_observation(SIZE)["pixels"]  # type: ignore[attr-defined]
        env.close()
        actions = torch.zeros(3, 4, 3)
        for g in (Goal("image", goal), Goal("joints", np.array([0.3, -0.2, 0.4]))):
            costs = adapter.objective(o, g)(actions)
            assert costs.shape == (3,)
            assert torch.all(torch.isfinite(costs))
        pic = adapter.imagine(o, Goal("image", goal), np.zeros((4, 3)))
        assert pic is not None
        assert pic.shape == (*SIZE, 3)
    finally:
        adapter.close()


def test_goal_image_adapter_errors(visual_cks: dict[str, Path], tmp_path: Path) -> None:
    from test_ros_models import save_tiny_checkpoint  # tests/ is on sys.path under pytest

    dino = str(visual_cks["dino_wm_conv"])
    with pytest.raises(ValueError, match="needs the checkpoint parameter"):
        make_model("goal_image", robot="planar")
    with pytest.raises(CheckpointError, match="not found"):
        make_model("goal_image", robot="planar", checkpoint=str(tmp_path / "missing.pt"))
    with pytest.raises(CheckpointError, match="`wm-plan train` checkpoint"):
        make_model(
            "goal_image", robot="planar", checkpoint=str(save_tiny_checkpoint(tmp_path / "t.pt"))
        )
    data = bytearray(Path(dino).read_bytes())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="corrupted"):
        make_model("goal_image", robot="planar", checkpoint=str(corrupt))
    with pytest.raises(ValueError, match=r"\(robot 'planar'\) but the node's robot is 'panda'"):
        make_model("goal_image", robot="panda", checkpoint=dino)
    with pytest.raises(ValueError, match="options \\['nope'\\] unknown"):
        make_model("goal_image", robot="planar", checkpoint=dino, options={"nope": 1})
    with pytest.raises(ValueError, match="takes no model_options"):
        make_model("mujoco", robot="planar", options={"proprio_weight": 1.0})


def test_visual_checkpoint_records_its_env_and_detects_flipped_bytes(
    visual_cks: dict[str, Path], tmp_path: Path
) -> None:
    from wm_planning.training.visual_checkpoint import load_visual_checkpoint

    ck = load_visual_checkpoint(visual_cks["dino_wm_conv"])
    assert ck.env == "planar-goal_reach"
    assert ck.name == "dino_wm"
    assert ck.config["steps"] == 2
    raw = torch.load(visual_cks["dino_wm_conv"], weights_only=True)
    key = next(iter(raw["state_dict"]))
    raw["state_dict"][key] = raw["state_dict"][key] + 1.0
    torch.save(raw, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_visual_checkpoint(tmp_path / "flipped.pt")
    raw["version"] = 99
    torch.save(raw, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_visual_checkpoint(tmp_path / "v99.pt")

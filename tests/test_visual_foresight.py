"""Visual foresight (CDNA): pixel distributions propagate through the predicted transformations
and the designated-pixel cost plans them toward the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from wm_planning import costs, planners
from wm_planning.costs_visual import DesignatedPixelCost, pixel_grid_distance
from wm_planning.models.registry import ModelSpec, make_model
from wm_planning.models.visual_foresight import CDNA, VisualForesightConfig, apply_kernels

SPEC = ModelSpec({"pixels": (16, 16, 3)}, action_dim=2, episode_length=20)


class ShiftCDNA(CDNA):
    """A CDNA whose single kernel is a narrow Gaussian centred at ``2·action`` pixels (so the
    action moves every pixel, differentiably) and whose masks pick that kernel everywhere."""

    def transformations(
        self, prev: Tensor, context: Tensor, action: Tensor
    ) -> tuple[Tensor, Tensor]:
        ks = self.cfg.kernel_size
        r = torch.arange(ks, dtype=action.dtype) - ks // 2
        # conv2d is a correlation: sampling at -offset moves content by +offset
        dr = (r[None, :, None] + 2 * action[:, 0, None, None]).pow(2)
        dc = (r[None, None, :] + 2 * action[:, 1, None, None]).pow(2)
        kernel = torch.softmax(-(dr + dc).flatten(1) / 0.3, -1).reshape(-1, 1, ks, ks)
        b, _, h, w = prev.shape
        masks = torch.zeros(b, 2, h, w)
        masks[:, 0] = 1.0
        return kernel, masks


def test_apply_kernels_moves_pixels() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    k = torch.zeros(1, 1, 3, 3)
    k[0, 0, 0, 1] = 1  # correlation with a tap above: content moves down one row
    y = apply_kernels(x, k)[0, 0, 0]
    assert y[3, 2] == 1
    assert y.sum() == 1


def test_designated_pixel_cost_moves_distribution_toward_target() -> None:
    model = ShiftCDNA(VisualForesightConfig(num_kernels=1, kernel_size=7, channels=8), SPEC)
    img = np.zeros((16, 16, 3), np.uint8)
    state = model.encode({"pixels": img, "designated_pixels": [(4.0, 4.0)]})
    target = torch.tensor([[10.0, 12.0]])
    cost = DesignatedPixelCost(targets=target)
    objective = costs.make_objective(model, state, cost)
    still = objective(torch.zeros(1, 3, 2)).item()
    assert abs(still - float(np.hypot(6, 8))) < 0.2  # zero action: pixel stays at (4, 4)
    cem = planners.make(
        "cem",
        horizon=3,
        action_low=(-1, -1),
        action_high=(1, 1),
        population=64,
        elites=8,
        iterations=4,
    )
    res = cem(objective, None, generator=torch.Generator().manual_seed(0))
    planned = objective(res.actions[None]).item()
    assert planned < 0.5 * still
    # the planned actions push down and right, and the distribution's mean follows
    assert (res.actions.sum(0) > 0).all()
    dist = model.rollout(state, res.actions[None]).get("pixel_dists")[0, -1, 0]
    assert torch.allclose(dist.sum(), torch.tensor(1.0), atol=1e-5)
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    mean = torch.stack([(dist * rows).sum(), (dist * cols).sum()])
    assert torch.linalg.norm(mean - target[0]) < torch.linalg.norm(torch.tensor([6.0, 8.0])) / 2
    assert pixel_grid_distance(target, (16, 16))[0, 10, 12] == 0


def test_cdna_rollout_preserves_probability_and_trains() -> None:
    torch.manual_seed(0)
    model = make_model("visual_foresight", SPEC, num_kernels=3, kernel_size=5, channels=8)
    assert isinstance(model, CDNA)
    rng = np.random.default_rng(0)
    state = model.encode(
        {
            "pixels": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
            "designated_pixels": [(3, 3), (8, 9)],
        }
    )
    out = model.rollout(state, torch.rand(4, 3, 2) * 2 - 1)
    assert out.frames is not None
    assert out.frames.shape == (4, 3, 3, 16, 16)
    assert out.frames.min() >= 0
    assert out.frames.max() <= 1
    d = out.get("pixel_dists")
    assert d.shape == (4, 3, 2, 16, 16)
    assert torch.allclose(d.sum((-2, -1)), torch.ones(4, 3, 2), atol=1e-5)
    goal = torch.rand(3, 16, 16)
    assert costs.make("goal_pixels", goal=goal)(out).shape == (4,)
    # a moving square: a few steps of training lower the prediction error
    g = torch.Generator().manual_seed(0)
    act = torch.rand(8, 3, 2, generator=g) * 2 - 1
    px = torch.zeros(8, 4, 16, 16, 3, dtype=torch.uint8)
    pos = torch.full((8, 2), 7.0)
    for t in range(4):
        for i in range(8):
            r, c = pos[i].round().long().clamp(1, 14).tolist()
            px[i, t, r - 1 : r + 2, c - 1 : c + 2] = 255
        if t < 3:
            pos = pos + 2 * act[:, t]
    batch = {"obs.pixels": px, "action": act}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss, m = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(m["loss"])
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses


def test_arm_camera_projection_is_the_pinhole_model() -> None:
    """``ArmEnv.project``: the camera's optical axis lands on the image centre, a point at the
    half field of view on the top edge; ``keypoints`` are the link tips and the end effector."""
    from wm_planning.envs.arm import ArmEnv

    env = ArmEnv("planar", "goal_reach", image_size=(48, 64))
    m, d = env.model, env.data
    cam = m.camera(env.spec.camera).id
    pos, rot = d.cam_xpos[cam], d.cam_xmat[cam].reshape(3, 3)
    ahead = pos - 2.0 * rot[:, 2]  # 2 m along the viewing direction (-z)
    half = np.tan(np.deg2rad(m.cam_fovy[cam]) / 2)
    top = ahead + 2.0 * half * rot[:, 1]  # up by the half field of view at that depth
    px = env.project(np.stack([ahead, top]))
    assert np.allclose(px, [[24.0, 32.0], [0.0, 32.0]], atol=1e-6)
    with pytest.raises(ValueError, match="behind the camera"):
        env.project((pos + rot[:, 2])[None])
    kp = env.keypoints()
    assert kp.shape == (3, 3)
    assert np.allclose(kp[-1], env.ee_pos())
    env.close()


def test_goal_command_with_designated_pixels(tmp_path: Path) -> None:
    """``wm-plan goal`` with visual foresight's designated-pixel cost: the arm's keypoints
    (re-located each plan) or a user's marks carried by the model's pixel distributions."""
    import json

    from wm_planning.cli import main as cli

    data, ck = tmp_path / "data", tmp_path / "vf.pt"
    collect = ["collect", "env=planar-goal_reach", "policy=correlated", "episodes=2"]
    assert cli([*collect, f"out={data}", "pixels=true", "image_size=32"]) == 0
    train = ["train-visual", "model=visual_foresight", f"data={data}", "steps=2", "batch_size=2"]
    assert cli([*train, f"out={ck}", "model_options.channels=8"]) == 0
    goal = ["goal", f"checkpoint={ck}", "env=planar-goal_reach", "seed=1000", "episodes=1",
            "steps=6", "plan_blocks=3", "replan_every=2", "planner.population=8",
            "planner.elites=2", "planner.iterations=1", "video=null", f"results={tmp_path / 'r.json'}"]  # fmt: skip
    assert cli([*goal, "designated.keypoints=true", "cost.every_step=true"]) == 0
    ep = json.loads((tmp_path / "r.json").read_text())["episodes"][0]
    assert len(ep["plan_times"]) == 3  # 6 steps, a plan every 2
    marks = ["designated.pixels=[[10,12],[20,5]]", "designated.targets=[[12,12],[18,9]]"]
    assert cli([*goal, *marks, f"video={tmp_path / 'd.mp4'}"]) == 0  # carried by the model
    assert (tmp_path / "d.mp4").is_file()
    probe = ["probe", f"checkpoint={ck}", "episodes=1", "sequences=2", "blocks=3"]
    assert cli([*probe, f"results={tmp_path / 'p.json'}"]) == 0
    rows = json.loads((tmp_path / "p.json").read_text())["metrics"]["pixel_mse"]
    assert [r["env_steps"] for r in rows] == [1, 2, 3]
    assert all(r["model_median"] >= 0 for r in rows)
    with pytest.raises(ValueError, match="one target per mark"):
        cli([*goal, "designated.pixels=[[10,12]]", "designated.targets=[[1,1],[2,2]]"])
    with pytest.raises(ValueError, match="inside the"):
        cli([*goal, "designated.pixels=[[40,12]]", "designated.targets=[[1,1]]"])


def test_keypoints_that_leave_the_image_stay_on_its_border() -> None:
    """A keypoint projected just outside the frame (the arm swung out of view) must not end the
    episode: it is held at the border, as a tracker's last sighting."""
    from wm_planning.commands.goal import _in_frame

    got = _in_frame(np.array([[28.4, 63.61], [-3.0, 10.0], [70.0, -1.0]]), (64, 64))
    assert np.allclose(got, [[28.4, 63.0], [0.0, 10.0], [63.0, 0.0]])

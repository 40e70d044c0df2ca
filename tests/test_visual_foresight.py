"""Visual foresight (CDNA): pixel distributions propagate through the predicted transformations
and the designated-pixel cost plans them toward the target."""

from __future__ import annotations

import numpy as np
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

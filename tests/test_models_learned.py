"""TD-MPC2 and PlaNet: building blocks, learning on a fixed batch, every planner, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wm_planning import costs, planners
from wm_planning.models import ModelSpec, make_model
from wm_planning.models.registry import LearnedModel
from wm_planning.models.tdmpc2 import simnorm, two_hot, two_hot_inv
from wm_planning.training import CheckpointError, load_checkpoint, save_checkpoint
from wm_planning.training.agent import make_planner

SPEC = ModelSpec({"state": (6,), "pixels": (64, 64, 3)}, action_dim=2, episode_length=50)
TINY = {
    "tdmpc2": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 3},
    "tdmpc2_pixels": {
        "obs": "pixels",
        "latent_dim": 16,
        "mlp_dim": 32,
        "num_channels": 4,
        "num_q": 2,
    },
    "planet": {"obs": "state", "belief_dim": 16, "state_dim": 4, "hidden_dim": 32, "embed_dim": 16},
    "planet_pixels": {
        "obs": "pixels",
        "belief_dim": 16,
        "state_dim": 4,
        "hidden_dim": 16,
        "frames": True,
    },
}


def tiny(kind: str, seed: int = 0) -> LearnedModel:
    torch.manual_seed(seed)
    return make_model(kind.split("_")[0], SPEC, **TINY[kind])


def fixed_batch(b: int = 8, length: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Learnable structure: reward = -|obs[0]|, next obs[:2] = obs[:2] + 0.1·action."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.zeros(b, length + 1, 6)
    obs[:, 0] = torch.randn(b, 6, generator=g)
    act = torch.rand(b, length, 2, generator=g) * 2 - 1
    for t in range(length):
        obs[:, t + 1] = obs[:, t]
        obs[:, t + 1, :2] += 0.1 * act[:, t]
    return {
        "obs.state": obs,
        "obs.pixels": torch.randint(
            0, 256, (b, length + 1, 64, 64, 3), dtype=torch.uint8, generator=g
        ),
        "action": act,
        "reward": -obs[:, 1:, 0].abs(),
        "terminated": torch.zeros(b, length, dtype=torch.bool),
    }


def test_two_hot_round_trip() -> None:
    x = torch.tensor([-50.0, -3.2, -0.01, 0.0, 0.5, 7.0, 300.0])
    bins = torch.linspace(-10, 10, 101)
    enc = two_hot(x, 101, -10.0, 10.0)
    assert torch.allclose(enc.sum(-1), torch.ones(7))
    assert ((enc > 0).sum(-1) <= 2).all()
    # decoding the exact two-hot (log of it as logits) recovers x
    logits = torch.log(enc.clamp_min(1e-30))
    back = two_hot_inv(logits, torch.stack([bins, torch.ones_like(bins)], 1))
    assert torch.allclose(back, x, rtol=1e-4, atol=1e-4)


def test_simnorm_groups_sum_to_one() -> None:
    x = torch.randn(5, 3, 64) * 4
    y = simnorm(x, 8)
    assert torch.allclose(y.view(5, 3, 8, 8).sum(-1), torch.ones(5, 3, 8), atol=1e-6)
    assert (y >= 0).all()
    m = tiny("tdmpc2")
    z = m.encode({"state": torch.randn(4, 6)}).latent
    assert torch.allclose(z.view(4, -1, 8).sum(-1), torch.ones(4, 2), atol=1e-6)


@pytest.mark.parametrize("kind", ["tdmpc2", "planet"])
def test_loss_decreases_on_fixed_batch(kind: str) -> None:
    model = tiny(kind)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = fixed_batch(length=3 if kind == "tdmpc2" else 6)
    model.train()
    losses = []
    for _ in range(40):
        torch.manual_seed(1)  # same dropout / policy noise each step: a fixed objective
        loss, _metrics = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_update()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    # PlaNet's KL is floored at free_nats = 3, so the reachable drop is smaller than TD-MPC2's
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("kind", ["tdmpc2_pixels", "planet_pixels"])
def test_pixel_models_run(kind: str) -> None:
    model = tiny(kind)
    loss, _ = model.loss(fixed_batch(b=2, length=2))
    loss.backward()
    model.eval()
    state = model.encode({"pixels": torch.randint(0, 256, (64, 64, 3), dtype=torch.uint8)})
    r = model.rollout(state, torch.zeros(3, 4, 2))
    assert r.rewards is not None
    assert r.rewards.shape == (3, 4)
    if kind == "planet_pixels":
        assert r.frames is not None
        assert r.frames.shape == (3, 4, 3, 64, 64)


def test_tdmpc2_rollout_contract() -> None:
    m = tiny("tdmpc2").eval()
    state = m.encode({"state": torch.randn(6)})
    acts = torch.rand(5, 4, 2) * 2 - 1
    with torch.no_grad():
        r = m.rollout(state, acts)
        assert r.latents is not None
        assert r.latents.shape == (5, 4, 16)
        assert r.terminal_value is not None
        assert r.terminal_value.shape == (5,)
        # deterministic without a generator; a state generator makes it follow the generator
        assert torch.equal(r.terminal_value, m.rollout(state, acts).terminal_value)
        state.generator = torch.Generator().manual_seed(3)
        a = m.rollout(state, acts).terminal_value
        state.generator = torch.Generator().manual_seed(3)
        assert torch.equal(a, m.rollout(state, acts).terminal_value)
        prior = m.policy_prior(state, 4, 7, torch.Generator().manual_seed(0))
    assert prior.shape == (7, 4, 2)
    assert prior.abs().max() <= 1
    assert costs.RewardCost(**m.default_cost_options()).value_weight == 1.0


def _plan(model: LearnedModel, name: str, seed: int = 0) -> torch.Tensor:
    small = {
        "cem": {"population": 32, "elites": 4, "iterations": 2},
        "icem": {"population": 32, "elites": 4, "iterations": 2},
        "mppi": {"num_samples": 32, "num_elites": 4, "iterations": 2},
        "random_shooting": {"num_samples": 32},
        "gradient": {"iterations": 3, "num_starts": 2},
    }
    opts = {k: v for k, v in small.get(name, {}).items()}
    planner = planners.make(
        name, horizon=3, action_low=(-1.0, -1.0), action_high=(1.0, 1.0), **opts
    )
    model.eval()
    state = model.encode({"state": torch.linspace(-1, 1, 6)})
    objective = costs.make_objective(model, state, costs.RewardCost(**model.default_cost_options()))
    gen = torch.Generator().manual_seed(seed)
    prior = model.policy_prior(state, 3, 4, gen)
    if planner.needs_gradients:
        return planner(objective, generator=gen, prior=prior).actions.detach()
    with torch.no_grad():
        return planner(objective, generator=gen, prior=prior).actions


@pytest.mark.parametrize("planner_name", planners.available())
@pytest.mark.parametrize("kind", ["tdmpc2", "planet"])
def test_every_planner_with_every_model(kind: str, planner_name: str) -> None:
    acts = _plan(tiny(kind), planner_name)
    assert acts.shape == (3, 2)
    assert torch.isfinite(acts).all()
    assert acts.abs().max() <= 1


def test_shipped_planner_configs_build() -> None:
    m = tiny("tdmpc2")
    assert make_planner(m, (-1.0,) * 2, (1.0,) * 2).config.horizon == 3
    assert make_planner(tiny("planet"), (-1.0,) * 2, (1.0,) * 2).config.horizon == 12


@pytest.mark.parametrize("kind", ["tdmpc2", "planet"])
def test_save_load_gives_identical_plans(kind: str, tmp_path: Path) -> None:
    model = tiny(kind)
    model.set_obs_stats(torch.full((6,), 0.5), torch.full((6,), 2.0))
    path = save_checkpoint(tmp_path / "m.pt", model, config={"env": "x"}, step=7)
    ck = load_checkpoint(path, expect_model=kind)
    loaded = ck.build_model()
    assert ck.step == 7
    assert ck.config == {"env": "x"}
    assert ck.data_stats["obs_mean"] == [0.5] * 6
    for name in ("mppi", "cem"):
        assert torch.equal(_plan(model, name, seed=5), _plan(loaded, name, seed=5))


def test_bad_checkpoints_fail_clearly(tmp_path: Path) -> None:
    model = tiny("tdmpc2")
    good = save_checkpoint(tmp_path / "good.pt", model)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "trunc.pt")
    flipped = bytearray(data)
    mid = len(data) // 2
    flipped[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])  # inside tensor data
    (tmp_path / "corrupt.pt").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "corrupt.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "junk.pt")
    raw = torch.load(good, weights_only=True)
    raw["version"] = 999
    torch.save(raw, tmp_path / "version.pt")
    with pytest.raises(CheckpointError, match="version 999"):
        load_checkpoint(tmp_path / "version.pt")
    with pytest.raises(CheckpointError, match="'tdmpc2' model, expected 'planet'"):
        load_checkpoint(good, expect_model="planet")
    raw = torch.load(good, weights_only=True)
    raw["model_options"]["latent_dim"] = 24  # options no longer fit the (intact) weights
    torch.save(raw, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "shape.pt").build_model()

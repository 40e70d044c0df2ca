"""DINO-WM: DINOv2-format weight loading, frame-causal predictor, gradients to actions,
anti-collapse guard and a short training run."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from wm_planning import costs, planners
from wm_planning.commands.probe import rank_metrics, spearman
from wm_planning.costs_visual import DinoGoalCost
from wm_planning.models.dino_wm import DinoWM, frame_causal_mask, pixels_to_float
from wm_planning.models.encoders import (
    AntiCollapse,
    DinoEncoder,
    RepresentationCollapseError,
    WeightsError,
    make_encoder,
)
from wm_planning.models.registry import ModelSpec, make_model

# tiny DINOv2 architecture: dim 32, 2 blocks, 2 heads, patch 4, trained at 16 px (4×4 grid)
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 4, "pretrain_size": 16}


def dinov2_state_dict(dim: int, depth: int, patch: int, grid: int, registers: int) -> dict:
    """A state dict with DINOv2 hub key names and shapes, written out independently of the
    model code so a renamed parameter fails the strict load."""
    g = torch.Generator().manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    sd = {
        "cls_token": r(1, 1, dim),
        "pos_embed": r(1, 1 + grid * grid, dim),
        "mask_token": r(1, dim),
        "patch_embed.proj.weight": r(dim, 3, patch, patch),
        "patch_embed.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
    }
    if registers:
        sd["register_tokens"] = r(1, registers, dim)
    for i in range(depth):
        b = f"blocks.{i}."
        sd |= {
            b + "norm1.weight": 1 + r(dim),
            b + "norm1.bias": r(dim),
            b + "attn.qkv.weight": r(3 * dim, dim),
            b + "attn.qkv.bias": r(3 * dim),
            b + "attn.proj.weight": r(dim, dim),
            b + "attn.proj.bias": r(dim),
            b + "ls1.gamma": r(dim),
            b + "norm2.weight": 1 + r(dim),
            b + "norm2.bias": r(dim),
            b + "mlp.fc1.weight": r(4 * dim, dim),
            b + "mlp.fc1.bias": r(4 * dim),
            b + "mlp.fc2.weight": r(dim, 4 * dim),
            b + "mlp.fc2.bias": r(dim),
            b + "ls2.gamma": r(dim),
        }
    return sd


@pytest.mark.parametrize("registers", [0, 4])
def test_dinov2_weights_load_strict_and_interpolate(tmp_path: Path, registers: int) -> None:
    sd = dinov2_state_dict(32, 2, 4, 4, registers)
    path = tmp_path / "dinov2_tiny.pth"
    torch.save(sd, path)
    enc = make_encoder(
        "dinov2_custom", weights=str(path), input_size=32, num_register_tokens=registers, **TINY
    )
    assert isinstance(enc, DinoEncoder)
    for k, v in enc.vit.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not any(p.requires_grad for p in enc.parameters())
    x = torch.rand(2, 3, 20, 20)
    tokens = enc(x)  # resized to 32 px -> 8×8 patches via interpolated pos_embed
    assert tokens.shape == (2, 64, 32)
    assert torch.isfinite(tokens).all()
    assert enc.vit.interpolate_pos_encoding(8, 8).shape == (1, 65, 32)
    # at the pretraining size the checkpoint's pos_embed is used unchanged
    assert torch.equal(enc.vit.interpolate_pos_encoding(4, 4), sd["pos_embed"])


def test_dinov2_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        make_encoder("dinov2_custom", weights=str(tmp_path / "absent.pth"), **TINY)
    sd = dinov2_state_dict(32, 2, 4, 4, 0)
    missing = dict(sd)
    del missing["blocks.1.attn.qkv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(WeightsError, match=r"blocks\.1\.attn\.qkv\.weight"):
        make_encoder("dinov2_custom", weights=str(tmp_path / "missing.pth"), **TINY)
    renamed = dict(sd)
    renamed["blocks.0.attn.to_qkv.weight"] = renamed.pop("blocks.0.attn.qkv.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(WeightsError, match=r"unexpected keys \['blocks\.0\.attn\.to_qkv"):
        make_encoder("dinov2_custom", weights=str(tmp_path / "renamed.pth"), **TINY)
    torch.save(sd, tmp_path / "ok.pth")
    with pytest.raises(WeightsError, match="shape"):  # a wider model than the file
        make_encoder(
            "dinov2_custom", weights=str(tmp_path / "ok.pth"), **(TINY | {"embed_dim": 64})
        )


SPEC = ModelSpec({"pixels": (32, 32, 3), "proprio": (4,)}, action_dim=2, episode_length=50)


TINY_DINO: dict[str, Any] = dict(
    encoder="conv",
    encoder_options={"embed_dim": 16, "channels": 8, "downsample": 3},
    history=3,
    frameskip=2,
    width=32,
    depth=2,
    heads=2,
    decoder_channels=8,
)  # tiny_model()'s options: what a checkpoint of it must record


def tiny_model(encoder: str = "conv", **kw: object) -> DinoWM:
    torch.manual_seed(0)
    opts: dict[str, object] = {**TINY_DINO, "encoder": encoder}
    opts.update(kw)
    model = make_model("dino_wm", SPEC, **opts)
    assert isinstance(model, DinoWM)
    return model


def test_frame_causal_mask_and_predictor_causality() -> None:
    m = frame_causal_mask(3, 2, torch.device("cpu"))
    assert m.tolist()[0] == [True, True, False, False, False, False]
    assert m.tolist()[5] == [True] * 6
    model = tiny_model().eval()
    x = torch.randn(1, 3, model.num_tokens, 16 + 10 + 10)
    y = model.predictor(x)
    x2 = x.clone()
    x2[:, 2] += 5.0  # change only the last (future) frame
    y2 = model.predictor(x2)
    assert torch.allclose(y[:, :2], y2[:, :2], atol=1e-6)  # earlier predictions unchanged
    assert not torch.allclose(y[:, 2], y2[:, 2])
    # the planning shortcut (last block for the last frame's tokens only) is the same prediction
    # and so is computing the frames every candidate shares once, at batch 1
    xb = torch.randn(4, 3, model.num_tokens, 16 + 10 + 10)
    for k in (1, 2, 3):
        full = model.predictor(x[:, :k])[:, -1:]
        assert torch.allclose(model.predictor(x[:, :k], last_only=True), full, atol=1e-5)
        for shared in range(1, k):
            xs = xb[:, :k].clone()
            xs[:, :shared] = xs[:1, :shared]  # the history every candidate shares
            ref = model.predictor(xs)[:, -1:]
            got = model.predictor(xs, last_only=True, shared=shared)
            assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="needs last_only"):
        model.predictor(xb, shared=1)


def obs(k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "pixels": rng.integers(0, 255, (k, 32, 32, 3), dtype=np.uint8),
        "proprio": rng.standard_normal((k, 4)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (k - 1, 4)).astype(np.float32),
    }


def test_rollout_matches_the_plain_predictor_loop() -> None:
    """The planning rollout (last block for the last frame only, shared history at batch 1) is
    the plain teacher-free loop: full predictor over the sliding window, last frame kept."""
    for model, k in [(tiny_model().eval(), k) for k in (1, 2, 3)] + [
        (tiny_model(residual=True).eval(), 3)
    ]:
        state = model.encode(obs(k, seed=k)) if k > 1 else model.encode({
            "pixels": obs(2)["pixels"][:1], "proprio": obs(2)["proprio"][:1]})  # fmt: skip
        actions = torch.rand(5, 8, 2, generator=torch.Generator().manual_seed(k)) * 2 - 1
        got = model.rollout(state, actions, outputs=frozenset({"latents"}))
        blocks = actions.reshape(5, 4, 4)
        z = state.tokens[None].expand(5, -1, -1, -1)
        p = state.proprio[None].expand(5, -1, -1)
        past = state.actions[None].expand(5, -1, -1)
        want = []
        for m in range(4):
            a = torch.cat([past, blocks[:, m : m + 1]], 1)
            zn, pn = model._split(model.predictor(model._tokens(z, p, a))[:, -1:])
            if model.cfg.residual:
                zn, pn = zn + z[:, -1:], pn + p[:, -1:]
            want.append(zn[:, 0].flatten(1))
            z = torch.cat([z, zn], 1)[:, -3:]
            p = torch.cat([p, pn], 1)[:, -3:]
            past = a[:, -(z.shape[1] - 1) :] if z.shape[1] > 1 else a[:, :0]
        assert torch.allclose(got.latents, torch.stack(want, 1), atol=1e-5)


def test_rollout_shapes_and_gradient_to_actions() -> None:
    model = tiny_model()
    state = model.encode(obs(3))
    assert state.tokens.shape == (3, 16, 16)
    assert state.actions.shape == (2, 4)
    actions = torch.zeros(5, 6, 2, requires_grad=True)  # H = 6 env steps = 3 model steps
    out = model.rollout(state, actions)
    assert out.latents is not None
    assert out.latents.shape == (5, 3, 16 * 16)
    assert out.frames is not None
    assert out.frames.shape == (5, 3, 3, 32, 32)
    assert out.get("proprio_latents").shape == (5, 3, 10)
    goal, goal_p = model.goal_latent(obs(1, seed=1)["pixels"][0], obs(1, seed=1)["proprio"][0])
    cost = costs.make("dino_goal", goal=goal, goal_proprio=goal_p, proprio_weight=0.5)
    c = cost(out)
    assert c.shape == (5,)
    c.sum().backward()
    assert actions.grad is not None
    assert torch.isfinite(actions.grad).all()
    assert actions.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="multiple of frameskip"):
        model.rollout(state, torch.zeros(1, 3, 2))


def test_gradient_and_cem_planners_plan_through_predictor() -> None:
    model = tiny_model().eval().requires_grad_(False)
    state = model.encode(obs(2))
    goal, _ = model.goal_latent(obs(1, seed=3)["pixels"][0])
    objective = costs.make_objective(model, state, DinoGoalCost(goal=goal, every_step=True))
    bounds = {"horizon": 4, "action_low": (-1.0, -1.0), "action_high": (1.0, 1.0)}
    start = objective(torch.zeros(1, 4, 2)).item()
    grad = planners.make("gradient", iterations=6, num_starts=2, lr=0.3, **bounds)
    res = grad(objective, None, generator=torch.Generator().manual_seed(0))
    assert res.actions.shape == (4, 2)
    assert float(res.cost) < start
    cem = planners.make("cem", population=16, elites=4, iterations=2, **bounds)
    res = cem(objective, None, generator=torch.Generator().manual_seed(0))
    assert res.actions.shape == (4, 2)
    assert torch.isfinite(res.cost)


def test_anti_collapse_guard() -> None:
    guard = AntiCollapse(min_std=0.01)
    healthy, metrics = guard(torch.randn(64, 16))
    assert metrics["enc_std"] > 0.5
    assert torch.isfinite(healthy)
    collapsed = torch.ones(64, 16) * 3 + 1e-5 * torch.randn(64, 16)
    with pytest.raises(RepresentationCollapseError, match="collapsed"):
        guard(collapsed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AntiCollapse(on_collapse="warn")(collapsed)
    assert any("collapsed" in str(w.message) for w in caught)
    # tokens that only encode their patch position: pooled they look healthy, per position
    # they are a collapse
    position_only = torch.randn(1, 9, 16).expand(64, 9, 16) + 1e-5 * torch.randn(64, 9, 16)
    assert guard(position_only)[1]["enc_std"] > 0.5
    with pytest.raises(RepresentationCollapseError, match="collapsed"):
        AntiCollapse(min_std=0.01, per_position=True)(position_only)
    tokens = torch.randn(64, 9, 16)
    assert AntiCollapse(per_position=True)(tokens)[1]["enc_std"] > 0.5
    with pytest.raises(ValueError, match="N×D"):
        AntiCollapse(per_position=True)(torch.randn(64, 16))
    # the model's loss runs the guard on its trainable encoder's tokens
    model = tiny_model()
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.zero_()
    batch = synthetic_batch(4, 6)
    with pytest.raises(RepresentationCollapseError):
        model.loss(batch)


def synthetic_batch(b: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A bright square that moves by the action on a dark 32×32 canvas."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, 2, generator=g) * 16 + 8
    act = torch.rand(b, length, 2, generator=g) * 2 - 1
    frames, props = [], []
    for t in range(length + 1):
        img = torch.zeros(b, 32, 32, 3, dtype=torch.uint8)
        for i in range(b):
            r, c = pos[i].round().long().clamp(2, 29).tolist()
            img[i, r - 2 : r + 3, c - 2 : c + 3] = 255
        frames.append(img)
        props.append(torch.cat([pos, pos], 1) / 32)
        if t < length:
            pos = (pos + 2 * act[:, t]).clamp(2, 29)
    return {
        "obs.pixels": torch.stack(frames, 1),
        "obs.proprio": torch.stack(props, 1),
        "action": act,
    }


def train_tiny(model: DinoWM, steps: int = 40) -> tuple[list[float], dict[str, float]]:
    """Adam on one synthetic batch: the loss per step and the last step's metrics."""
    batch = synthetic_batch(16, 6)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses, metrics = [], {}
    for _ in range(steps):
        loss, metrics = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss"])
    return losses, metrics


def test_tiny_dino_wm_training_lowers_loss() -> None:
    losses, metrics = train_tiny(tiny_model())
    assert set(metrics) >= {"z_loss", "proprio_loss", "decoder_loss", "enc_std"}
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_residual_predictor_starts_from_nothing_moves() -> None:
    """residual=true: with the predictor's output at zero the rollout is the current frame's
    tokens and proprio (a plain model predicts its output head's bias); it still trains."""
    for residual in (True, False):
        model = tiny_model(residual=residual)
        with torch.no_grad():
            model.predictor.out.weight.zero_()
            model.predictor.out.bias.zero_()
        state = model.encode(obs(3))
        roll = model.rollout(state, torch.rand(4, 6, 2) * 2 - 1, frozenset({"latents"}))
        now = state.tokens[-1].flatten()[None, None].expand_as(roll.latents)
        assert torch.allclose(roll.latents, now) == residual
        pe = roll.extras["proprio_latents"]
        assert torch.allclose(pe, state.proprio[-1].expand_as(pe)) == residual
    losses, _ = train_tiny(tiny_model(residual=True, anti_collapse={"per_position": True}))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def test_rank_metrics() -> None:
    """Spearman and the regret of the model's pick, on costs whose answers are known."""
    true = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    good = rank_metrics(true * 2 + 1, true)
    assert good == {"spearman": pytest.approx(1.0), "regret": 0.0, "picked_best": 1.0}
    worst = rank_metrics(-true, true)
    assert worst["spearman"] == pytest.approx(-1.0)
    assert worst["regret"] == pytest.approx(2.0)  # picks 4: (4 - 0) / (median 2 - best 0)
    assert worst["picked_best"] == 0.0
    assert np.isnan(spearman(np.ones(5), true))


def test_joint_support_penalty_keeps_plans_to_the_datas_joints() -> None:
    """The penalty is the data support's squared excess of the commanded joint targets (the
    env's own action-to-target map, no model): 0 for plans that stay in the data, growing with
    how far a plan leaves it, and a sampling planner on it stays inside."""
    from wm_planning import envs
    from wm_planning.commands.goal import joint_support_penalty
    from wm_planning.data.support import DataSupport

    env = envs.make("planar-goal_reach")
    env.reset(seed=0)
    q0 = np.array(env.q_ref, dtype=float)
    rng = np.random.default_rng(0)
    support = DataSupport.fit(q0 + 0.05 * rng.standard_normal((500, len(q0))))
    zero = joint_support_penalty(lambda a: a.new_zeros(a.shape[0]), env, support, weight=2.0)
    h, a_dim = 6, len(env.spec.action_low)
    still = torch.zeros(1, h, a_dim)
    small, large = torch.full((1, h, a_dim), 0.02), torch.full((1, h, a_dim), 1.0)
    pen = zero(torch.cat([still, small, large]))
    assert pen[0] == 0.0
    assert 0.0 <= pen[1] < pen[2]
    _, q = env.controls(
        np.repeat(q0[None], 3, 0), torch.cat([still, small, large]).double().numpy()
    )
    assert torch.allclose(pen, 2.0 * torch.as_tensor(support.excess(q).mean(1)).float())
    # a planner pulled to push joint 0 far: with the penalty it stops near the data's edge
    pull = lambda a: -a[..., 0].mean(1)  # noqa: E731
    plans = {}
    for w in (0.0, 100.0):
        obj = joint_support_penalty(pull, env, support, weight=w)
        planner = planners.make("cem", horizon=h, action_low=(-1.0,) * a_dim,
                                action_high=(1.0,) * a_dim, population=64, elites=8,
                                iterations=5)  # fmt: skip
        plans[w] = planner(obj, generator=torch.Generator().manual_seed(0)).actions
    _, q_free = env.controls(q0[None], plans[0.0][None].double().numpy())
    _, q_kept = env.controls(q0[None], plans[100.0][None].double().numpy())
    assert support.distance(q_free[0, -1]) > 3 * support.radius
    assert support.distance(q_kept[0, -1]) < 1.5 * support.radius
    env.close()


def test_open_loop_loss_scores_what_planning_predicts() -> None:
    """rollout_loss_weight: the open-loop frames the loss scores are the planning rollout's from
    the window's first frame (same actions); the extra term trains and lowers the open-loop
    error; without it the metrics and loss are the teacher-forced ones alone."""
    batch = synthetic_batch(4, 6, seed=3)
    for residual in (False, True):
        model = tiny_model(residual=residual, rollout_loss_weight=1.0).eval()
        k, s = model.cfg.history, model.cfg.frameskip
        idx = torch.arange(0, k * s + 1, s)
        with torch.no_grad():
            z = model.encode_images(pixels_to_float(batch["obs.pixels"][:, idx]))
            p = model.embed_proprio(batch["obs.proprio"][:, idx], tuple(z.shape[:2]))
            a = batch["action"][:, : k * s].reshape(4, k, -1)
            zp, pp = model._split(model.predictor(model._tokens(z[:, :k], p[:, :k], a)))
            if residual:
                zp, pp = zp + z[:, :k], pp + p[:, :k]
            zo, po = model._open_loop(z[:, :1], p[:, :1], a, zp[:, :1], pp[:, :1])
            for i in range(4):
                first = {"pixels": batch["obs.pixels"][i, :1].numpy(),
                         "proprio": batch["obs.proprio"][i, :1].numpy()}  # fmt: skip
                roll = model.rollout(model.encode(first), batch["action"][i : i + 1, : k * s])
                assert torch.allclose(roll.latents[0, 1:], zo[i].flatten(1), atol=1e-4)
                assert torch.allclose(roll.extras["proprio_latents"][0, 1:], po[i], atol=1e-4)
    model = tiny_model(residual=True, rollout_loss_weight=1.0)
    losses, metrics = train_tiny(model)
    assert {"rollout_z_loss", "rollout_proprio_loss"} <= set(metrics)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    _, plain = tiny_model(residual=True).loss(synthetic_batch(16, 6))
    assert "rollout_z_loss" not in plain
    with pytest.raises(ValueError, match="loss weights"):
        tiny_model(rollout_loss_weight=-1.0)
    with pytest.raises(ValueError, match="history >= 2"):
        tiny_model(rollout_loss_weight=1.0, history=1)


def test_frozen_dino_encoder_in_world_model(tmp_path: Path) -> None:
    torch.save(dinov2_state_dict(32, 2, 4, 4, 0), tmp_path / "w.pth")
    model = tiny_model(
        encoder="dinov2_custom",
        encoder_options=TINY | {"weights": str(tmp_path / "w.pth"), "input_size": 16},
    )
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = model.loss(synthetic_batch(4, 6))
    loss.backward()
    opt.step()
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), f"frozen encoder changed: {k}"
    assert model.encode(obs(3)).tokens.shape == (3, 16, 32)


def test_goal_command_on_held_out_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """collect → train-visual → ``wm-plan goal`` end to end: results JSON, one video, and the
    held-out guard refusing seeds that are training episodes."""
    import json

    from wm_planning.cli import main as cli

    data, ck = tmp_path / "data", tmp_path / "dino.pt"
    collect = ["collect", "env=planar-goal_reach", "policy=correlated", "episodes=2"]
    assert cli([*collect, f"out={data}", "pixels=true", "image_size=32"]) == 0
    train = ["train-visual", "model=dino_wm_conv", f"data={data}", "steps=2", "batch_size=2"]
    assert cli([*train, f"out={ck}", "log_every=1", "model_options.decoder=false"]) == 0
    assert (tmp_path / "dino.csv").read_text().count("\n") == 3  # header + 2 logged steps
    goal = [
        "goal", f"checkpoint={ck}", "env=planar-goal_reach", "episodes=2", "steps=10",
        "plan_blocks=2", "planner.population=8", "planner.elites=2", "planner.iterations=1",
        f"video={tmp_path / 'g.mp4'}", f"results={tmp_path / 'r.json'}", f"held_out_from={data}",
    ]  # fmt: skip
    with pytest.raises(SystemExit, match="training episodes"):
        cli([*goal, "seed=1"])  # seeds 1, 2: seed 1 is a training episode
    capsys.readouterr()
    # DINO-WM's objective: goal image tokens + the goal's proprioception, scored every block
    argv = [*goal, "seed=1000", "cost.every_step=true", "cost.proprio_weight=0.5", "profile=true"]
    assert cli(argv) == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["summary"]["episodes"] == 2
    assert [e["seed"] for e in out["episodes"]] == [1000, 1001]
    assert all(len(e["plan_times"]) == 2 for e in out["episodes"])  # 10 steps / frameskip 5
    # held_out_from= also logs how far the arm is from the training data's proprioception
    assert all(len(e["support_trace"]) == 10 for e in out["episodes"])
    support = out["summary"]["support"]
    meta = json.loads((data / "meta.json").read_text())
    assert support["samples"] == sum(e["length"] + 1 for e in meta["episodes"])  # T+1 each
    left = [e for e in out["episodes"] if e["left_support_step"] is not None]
    assert support["left"] == len(left)
    for e in left:
        assert e["support_trace"][e["left_support_step"] - 1] > support["radius"]
    assert (tmp_path / "g.mp4").is_file()
    assert not (tmp_path / "g_1.mp4").exists()  # video_episodes=1
    printed = capsys.readouterr().out
    assert "success" in printed
    assert "profile of one plan (seed 1000)" in printed
    assert "aten::" in printed
    # plans kept near the training data's joint positions (commanded targets, exact)
    assert cli([*goal, "seed=1000", "episodes=1", "support_weight=10", "video=null"]) == 0
    kept = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert kept["support_weight"] == 10
    assert kept["joint_support_radius"] > 0
    no_data = [a for a in goal if not a.startswith("held_out_from")]
    with pytest.raises(ValueError, match="held_out_from"):
        cli([*no_data, "seed=1000", "support_weight=1"])
    with pytest.raises(ValueError, match="sampling planners"):
        cli([*goal, "seed=1000", "support_weight=1", "planner=gradient"])
    # replanning every other block halves the plans; a cadence off the model's blocks is refused
    assert cli([*goal, "seed=1000", "episodes=1", "replan_every=10", "video=null"]) == 0
    assert len(json.loads((tmp_path / "r.json").read_text())["episodes"][0]["plan_times"]) == 1
    with pytest.raises(ValueError, match="multiple of the model's frameskip"):
        cli([*goal, "seed=1000", "episodes=1", "replan_every=3"])
    # oracle=true: the same objective and planner on the simulator rendered through the encoder
    assert cli([*goal, "seed=1000", "episodes=1", "oracle=true", "cost.proprio_weight=0.5"]) == 0
    oracle = json.loads((tmp_path / "r.json").read_text())
    assert oracle["summary"]["oracle"] is True
    assert len(oracle["episodes"][0]["plan_times"]) == 2
    with pytest.raises(ValueError, match="designated pixels"):
        cli([*goal, "seed=1000", "episodes=1", "oracle=true", "designated.keypoints=true"])
    # audit=K: every plan's candidates also scored on the simulator; the episode is unchanged
    assert cli([*goal, "seed=1000", "episodes=1", "audit=4", "video=null"]) == 0
    audited = json.loads((tmp_path / "r.json").read_text())
    plans = audited["episodes"][0]["audit"]
    assert [p["step"] for p in plans] == [0, 5]
    assert all(len(p["model_costs"]) == len(p["true_costs"]) == 4 for p in plans)
    assert all(p["model_costs"] == sorted(p["model_costs"]) for p in plans)  # pick first
    assert audited["summary"]["audit"][0]["plans"] == 2
    with pytest.raises(ValueError, match="learned model"):
        cli([*goal, "seed=1000", "episodes=1", "audit=4", "oracle=true"])
    # record=DIR: the planner's own episodes as a dataset a model can be fine-tuned on
    rec = tmp_path / "own"
    assert cli([*goal, "seed=1000", "video=null", f"record={rec}", "workers=2"]) == 0
    from wm_planning.data import Dataset

    own = Dataset(rec)
    assert [e["seed"] for e in own.meta["episodes"]] == [1000, 1001]
    first = own.load(0)
    assert len(first) == 10
    assert first.obs["pixels"].shape == (11, 32, 32, 3)
    # replaying the recorded actions from the seed's reset gives the recorded states
    from wm_planning import envs

    replay = envs.make("planar-goal_reach")
    replay.reset(seed=1000)
    for a in first.actions:
        o, *_ = replay.step(a)
    assert np.allclose(o["proprio"], first.obs["proprio"][-1], atol=1e-6)
    replay.close()
    with pytest.raises(FileExistsError, match="already holds"):
        cli([*goal, "seed=1000", "video=null", f"record={rec}"])
    tuned = tmp_path / "tuned.pt"
    assert cli([*train, f"data={data},{rec}", f"init_from={ck}", f"out={tuned}",
                "model_options.decoder=false"]) == 0  # fmt: skip
    # an image file carries no proprioception, so a proprio term cannot be scored
    import imageio.v2 as imageio

    imageio.imwrite(tmp_path / "goal.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="proprioception"):
        cli([*goal, "seed=1000", f"goal_image={tmp_path / 'goal.png'}", "cost.proprio_weight=1"])
    # the open-loop probe: model vs simulator from held-out starts, next to "nothing moves"
    probe = ["probe", f"checkpoint={ck}", "episodes=1", "sequences=3", "blocks=2"]
    assert cli([*probe, f"results={tmp_path / 'p.json'}"]) == 0
    metrics = json.loads((tmp_path / "p.json").read_text())["metrics"]
    assert set(metrics) == {"token_mse", "proprio_emb_mse", "joint_err_rad"}
    still = [r["still_median"] for r in metrics["joint_err_rad"]]
    assert 0 < still[0] < still[1]  # random walks move the arm further with every block
    assert cli([*probe, "action_scale=0.001", f"results={tmp_path / 'p.json'}"]) == 0
    tiny = json.loads((tmp_path / "p.json").read_text())["metrics"]["joint_err_rad"]
    assert tiny[1]["still_median"] < 0.01 * still[1]
    # sequences from a data policy, from mid-episode (the model gets its history), ranked by
    # the goal cost on the model's predictions against the simulator's frames
    ranked = [*probe, "policy=scripted", "start_step=5", "rank=true", "cost.every_step=true",
              "cost.proprio_weight=1", f"results={tmp_path / 'p.json'}"]  # fmt: skip
    assert cli(ranked) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    assert (out["start_step"], out["policy"]) == (5, "scripted")
    assert out["ranking"]["cost"] == {"every_step": True, "proprio_weight": 1}
    assert len(out["ranking"]["per_start"]) == 1
    assert [r["blocks"] for r in out["ranking"]["by_horizon"]] == [1, 2]
    assert all(r["regret_median"] >= 0 for r in out["ranking"]["by_horizon"])
    with pytest.raises(ValueError, match="needs a policy"):
        cli([*probe, "start_step=5"])
    trace = json.loads((tmp_path / "r.json").read_text())["episodes"][0]["distance_trace"]
    assert len(trace) == 10
    assert all(d >= 0 for d in trace)
    # workers=2 shares the episodes among processes: the same episodes, in seed order
    one = [*goal, "seed=1000", "video=null", "threads=1"]
    assert cli(one) == 0
    serial = json.loads((tmp_path / "r.json").read_text())
    assert cli([*one, "workers=2"]) == 0
    shared = json.loads((tmp_path / "r.json").read_text())
    assert shared["summary"]["workers"] == 2
    assert [e["seed"] for e in shared["episodes"]] == [1000, 1001]
    for a, b in zip(serial["episodes"], shared["episodes"], strict=True):
        assert a["distance_trace"] == b["distance_trace"]


def test_train_visual_on_several_datasets(tmp_path: Path) -> None:
    """data=a,b trains on both datasets' episodes; held_out_from=a,b guards both; a dataset of
    another env or layout is refused by name."""
    from wm_planning.cli import main as cli
    from wm_planning.commands.train_visual import open_datasets
    from wm_planning.data import DatasetError

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    collect = ["collect", "env=planar-goal_reach", "episodes=1", "pixels=true"]
    assert cli([*collect, "policy=correlated", f"out={a}", "image_size=32"]) == 0
    assert cli([*collect, "policy=scripted", f"out={b}", "seed=5", "image_size=32"]) == 0
    assert cli([*collect, "policy=correlated", f"out={c}", "seed=9", "image_size=24"]) == 0
    assert [ds.path for ds in open_datasets(f"{a},{b}")] == [a, b]
    train = ["train-visual", "model=dino_wm_conv", "steps=1", "batch_size=2", "log_every=1",
             "model_options.decoder=false", f"out={tmp_path / 'm.pt'}"]  # fmt: skip
    assert cli([*train, f"data=[{a},{b}]"]) == 0
    with pytest.raises(DatasetError, match="does not match"):
        cli([*train, f"data={a},{c}"])
    goal = ["goal", f"checkpoint={tmp_path / 'm.pt'}", "episodes=1", "steps=5", "video=null",
            "plan_blocks=1", "planner.population=4", "planner.elites=2", "planner.iterations=1",
            f"held_out_from=[{a},{b}]"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"seeds \[5\]"):
        cli([*goal, "seed=5"])  # the second dataset's episode


def test_train_visual_resume_continues_bit_identically(tmp_path: Path) -> None:
    """2 steps + ``resume=true`` to 4 gives the same weights and loss curve as 4 steps at once;
    resuming with other settings or without a checkpoint fails with the reason."""
    from wm_planning.cli import main as cli
    from wm_planning.training.checkpoint import CheckpointError
    from wm_planning.training.visual_checkpoint import load_visual_checkpoint

    data = tmp_path / "data"
    collect = ["collect", "env=planar-goal_reach", "policy=correlated", "episodes=2"]
    assert cli([*collect, f"out={data}", "pixels=true", "image_size=32"]) == 0
    base = ["train-visual", "model=dino_wm_conv", f"data={data}", "batch_size=2", "log_every=1",
            "warmup=1", "model_options.decoder=false"]  # fmt: skip
    assert cli([*base, "steps=4", f"out={tmp_path / 'once.pt'}"]) == 0
    assert cli([*base, "steps=2", f"out={tmp_path / 'twice.pt'}"]) == 0
    with (tmp_path / "twice.csv").open("a") as f:  # killed after logging step 3, before saving it
        f.write("3,0.1,0.001,9.9\n")
    assert cli([*base, "steps=4", f"out={tmp_path / 'twice.pt'}", "resume=true"]) == 0
    once, twice = (load_visual_checkpoint(tmp_path / f"{n}.pt") for n in ("once", "twice"))
    assert twice.step == once.step == 4
    a, b = once.model.state_dict(), twice.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    curve = [(tmp_path / f"{n}.csv").read_text().splitlines() for n in ("once", "twice")]
    assert len(curve[0]) == len(curve[1]) == 5  # header + steps 1..4, appended on resume
    assert [r.split(",")[3] for r in curve[0]] == [r.split(",")[3] for r in curve[1]]  # loss

    with pytest.raises(CheckpointError, match="batch_size 2 \\(now 4\\)"):
        cli([*base, "steps=6", f"out={tmp_path / 'twice.pt'}", "resume=true", "batch_size=4"])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        cli([*base, "steps=2", f"out={tmp_path / 'none.pt'}", "resume=true"])
    # stripped for shipping: same weights and env, no optimizer state (so no resume)
    assert cli(["checkpoint-strip", str(tmp_path / "once.pt"), str(tmp_path / "ship.pt")]) == 0
    ship = load_visual_checkpoint(tmp_path / "ship.pt")
    assert ship.train_state is None
    assert ship.env == once.env
    assert ship.action_box == once.action_box is not None  # the training actions' box
    assert len(once.action_box["low"]) == once.model.action_dim
    assert all(torch.equal(a[k], ship.model.state_dict()[k]) for k in a)
    assert (tmp_path / "ship.pt").stat().st_size < (tmp_path / "once.pt").stat().st_size
    with pytest.raises(CheckpointError, match="stripped"):
        cli([*base, "steps=6", f"out={tmp_path / 'ship.pt'}", "resume=true"])

    # init_from: the trained weights, a fresh optimizer (its first loss is the trained model's)
    fine = [*base, "steps=1", f"out={tmp_path / 'fine.pt'}", f"init_from={tmp_path / 'once.pt'}"]
    assert cli(fine) == 0
    first = float((tmp_path / "fine.csv").read_text().splitlines()[1].split(",")[3])
    fresh = float(curve[0][1].split(",")[3])  # the untrained model on the same first batch
    assert first < fresh
    with pytest.raises(CheckpointError, match=r"other options \(\['history'\]\)"):
        cli([*fine, "model_options.history=2"])
    # options that only weigh the loss may change when fine-tuning; the new file records them
    assert cli([*fine, "model_options.proprio_loss_weight=10"]) == 0
    assert load_visual_checkpoint(tmp_path / "fine.pt").options["proprio_loss_weight"] == 10


def test_action_box_keeps_plans_to_the_training_actions(tmp_path: Path) -> None:
    """A checkpoint records the central 99 % of its training actions per dimension; goal planning
    samples inside that box (within the env's), or the env's own box with action_box=env."""
    from wm_planning.training.checkpoint import CheckpointError
    from wm_planning.training.visual_checkpoint import (
        action_box,
        load_visual_checkpoint,
        planning_box,
        save_checkpoint,
    )

    rng = np.random.default_rng(0)
    acts = np.stack([rng.uniform(-0.1, 0.1, 4000), rng.uniform(0.2, 0.6, 4000)], 1)
    box = action_box(np.split(acts, 4))  # four episodes' actions
    assert np.allclose(box["low"], [-0.099, 0.202], atol=2e-3)
    assert np.allclose(box["high"], [0.099, 0.598], atol=2e-3)
    env_low, env_high = -np.ones(2), np.array([1.0, 0.5])
    low, high = planning_box("data", box, env_low, env_high)
    assert np.allclose(low, box["low"])
    assert np.allclose(high, [box["high"][0], 0.5])  # never beyond the env's box
    for choice, b in (("env", box), ("data", None)):  # the env's box
        low, high = planning_box(choice, b, env_low, env_high)
        assert np.array_equal(low, env_low)
        assert np.array_equal(high, env_high)
    with pytest.raises(ValueError, match="'data' or 'env'"):
        planning_box("whole", box, env_low, env_high)
    # a checkpoint carries it; a malformed one is refused by name
    model = tiny_model()
    bad = {"low": [0.0] * model.action_dim, "high": [0.0] * model.action_dim}
    save_checkpoint(tmp_path / "bad.pt", "dino_wm", TINY_DINO, model, action_box=bad)
    with pytest.raises(CheckpointError, match="action_box must be 2 low < high pairs"):
        load_visual_checkpoint(tmp_path / "bad.pt")


def test_shipped_goal_reach_checkpoint(tmp_path: Path) -> None:
    """checkpoints/planar_goal_reach_dino_wm.pt loads (format, checksum, weights_only), knows its
    env, and steers the planar arm towards a held-out goal image with a small planning budget."""
    import json

    from wm_planning.cli import main as cli
    from wm_planning.training.visual_checkpoint import load_visual_checkpoint

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "planar_goal_reach_dino_wm.pt"
    ck = load_visual_checkpoint(path)
    assert (ck.name, ck.env, ck.train_state) == ("dino_wm", "planar-goal_reach", None)
    assert ck.model.cfg.residual
    goal = ["goal", f"checkpoint={path}", "seed=1001", "steps=60", "plan_blocks=2",
            "planner=icem", "planner.population=64", "planner.elites=8", "planner.iterations=3",
            "cost.every_step=true", "cost.proprio_weight=1.0", "video=null",
            f"results={tmp_path / 'r.json'}"]  # fmt: skip
    assert cli(goal) == 0
    ep = json.loads((tmp_path / "r.json").read_text())["episodes"][0]
    assert ep["distance"] < 0.5 * ep["start_distance"], ep["distance_trace"]


def _tiny_dino_for(env: Any) -> DinoWM:
    """An untrained tiny DINO-WM (seed 0) on ``env``'s 32×32 pixels and proprioception."""
    torch.manual_seed(0)
    spec = ModelSpec(
        {"pixels": (32, 32, 3), "proprio": env.spec.obs_shapes["proprio"]},
        action_dim=env.spec.action_dim,
        episode_length=50,
    )
    model = make_model("dino_wm", spec, **TINY_DINO).eval()
    assert isinstance(model, DinoWM)
    return model


def test_audit_of_a_perfect_model_ranks_like_the_simulator() -> None:
    """``wm-plan goal audit=K``: the candidates are spread over the model's ranking with its
    pick first, and a model that predicts exactly (the simulator itself) ranks them as the
    simulator does, while a model that predicts nothing moving does not."""
    from wm_planning import costs, envs, planners
    from wm_planning.commands.goal import _audit, _recording, audit_candidates
    from wm_planning.costs_visual import goal_cost
    from wm_planning.models.rendered_dynamics import RenderedDynamics

    c = torch.tensor([5.0, 1.0, 4.0, 3.0, 9.0, 2.0, 7.0])
    assert audit_candidates(c, 3).tolist() == [1, 2, 4]  # ranks 0, 3, 6: best, median, worst
    assert audit_candidates(c, 10).tolist() == torch.argsort(c).tolist()

    env = envs.make("planar-goal_reach", pixels=True, image_size=(32, 32))
    obs = env.reset(seed=5)
    model = _tiny_dino_for(env)
    exact = RenderedDynamics(model, env)
    g = env.goal_observation((32, 32))
    cost = goal_cost(model, g["pixels"], g["proprio"], proprio_weight=1.0)
    low, high = env.spec.action_low, env.spec.action_high
    planner = planners.make("cem", horizon=4, action_low=low, action_high=high, population=16,
                            elites=4, iterations=2)  # fmt: skip
    state = exact.encode({})
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    objective = _recording(costs.make_objective(exact, state, cost), seen)
    result = planner(objective, generator=torch.Generator().manual_seed(0))
    # every batch the planner scored was recorded (CEM's 2 × 16 samples and its final mean)
    assert sum(len(a) for a, _ in seen) == int(result.info["num_evaluated"]) == 33
    perfect = _audit(exact, exact, state, cost, seen, 8)
    assert perfect["model_costs"] == sorted(perfect["model_costs"])
    assert perfect["spearman"] == pytest.approx(1.0)
    assert (perfect["regret"], perfect["picked_best"]) == (0.0, 1.0)
    assert np.array_equal(env.get_state(), state)  # the audit left the episode where it was
    # the tiny untrained predictor: its costs are its own, not the simulator's
    enc = {"pixels": obs["pixels"][None], "proprio": obs["proprio"][None]}
    learned = _audit(model, exact, model.encode(enc), cost, seen, 8)
    assert learned["true_costs"] != learned["model_costs"]
    assert sorted(learned["true_costs"]) == pytest.approx(sorted(perfect["true_costs"]))


def test_rendered_dynamics_predicts_what_the_simulator_then_shows() -> None:
    """``oracle=true``'s model: a rollout's tokens and proprio embeddings are those of the frames
    the env shows after executing the same actions, and the env is left where it was."""
    from wm_planning import envs
    from wm_planning.models.dino_wm import pixels_to_float
    from wm_planning.models.rendered_dynamics import RenderedDynamics

    env = envs.make("planar-goal_reach", pixels=True, image_size=(32, 32))
    env.reset(seed=3)
    model = _tiny_dino_for(env)
    oracle = RenderedDynamics(model, env)
    state = oracle.encode({})
    a_dim = env.spec.action_dim
    acts = torch.as_tensor(
        np.random.default_rng(0).uniform(-1, 1, (3, 4, a_dim)), dtype=torch.float32
    )
    out = oracle.rollout(state, acts)
    assert out.latents is not None
    assert out.frames is not None
    assert out.latents.shape == (3, 2, model.latent_dim)  # 4 env steps = 2 model steps
    assert out.frames.shape == (3, 2, 3, 32, 32)
    assert np.array_equal(env.get_state(), state)  # rendering restored the simulator
    frames, props = [], []
    for t in range(4):  # candidate 1, executed for real
        o, *_ = env.step(acts[1, t].numpy())
        if t % 2 == 1:
            frames.append(o["pixels"])
            props.append(o["proprio"])
    with torch.no_grad():
        z = model.encode_images(pixels_to_float(torch.as_tensor(np.stack(frames))))
        pe = model.embed_proprio(torch.as_tensor(np.stack(props)), (2,))
    assert torch.allclose(out.latents[1], z.flatten(1), atol=1e-5)
    assert torch.allclose(out.extras["proprio_latents"][1], pe, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the model's frameskip"):
        oracle.rollout(state, acts[:, :3])
    # a pixel-space model (visual foresight: no encoder) is scored on the rendered frames alone
    pixel_model = SimpleNamespace(config=SimpleNamespace(frameskip=1), obs_shape=(32, 32, 3))
    px = RenderedDynamics(pixel_model, env)
    assert px.provides == frozenset({"frames"})
    out = px.rollout(env.get_state(), acts[:1, :1])
    assert out.latents is None
    assert out.frames is not None
    o, *_ = env.step(acts[0, 0].numpy())
    assert torch.equal(out.frames[0, 0], pixels_to_float(torch.as_tensor(o["pixels"])))
    env.close()

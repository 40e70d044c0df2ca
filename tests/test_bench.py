"""The planner benchmark harness: rows, JSON, FLOP counting, synthetic models. No timing asserts."""

from __future__ import annotations

import json

import pytest
import torch

from wm_planning import bench
from wm_planning.bench.models import RSSMFused, RSSMReference, TDMPC2Fused, TDMPC2Reference
from wm_planning.cli import main

TINY = bench.TDMPC2Size(latent_dim=16, mlp_dim=24, action_dim=3, num_q=4)
COLUMNS = {
    "config",
    "planner",
    "model",
    "mode",
    "device",
    "threads",
    "median_ms",
    "p90_ms",
    "rollouts_per_s",
    "gflops",
    "pct_peak",
    "speedup",
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Other processes share the cores; one thread keeps the quick runs short and predictable.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _quick(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    argv = ["bench", "planners", "--quick", "--mode", "eager", "--threads", "1"]
    assert main([*argv, "--planners", "mppi,cem,pytorch_mppi", *flags]) == 0
    return capsys.readouterr().out


def test_quick_json_rows_have_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(_quick(capsys, "--json", "--models", "fused,reference"))
    assert data["peak"]["gflops"] > 0
    rows = data["rows"]
    got = {(r["planner"], r["model"]) for r in rows}
    assert got == {(p, m) for p in ("mppi", "cem", "pytorch_mppi") for m in ("fused", "reference")}
    for r in rows:
        assert set(r) >= COLUMNS
        assert (r["config"], r["mode"], r["device"]) == ("tiny", "eager", "cpu")
        assert 0 < r["median_ms"] <= r["p90_ms"]
        assert min(r["rollouts_per_s"], r["gflop_per_plan"]) > 0
        assert r["pct_peak"] == pytest.approx(100 * r["gflops"] / data["peak"]["gflops"])
        if r["planner"] == "pytorch_mppi":
            ours = next(o for o in rows if o["planner"] == "mppi" and o["model"] == r["model"])
            assert r["speedup"] == pytest.approx(r["median_ms"] / ours["median_ms"])
        else:
            assert r["speedup"] is None


def test_quick_table_names_mode_threads_and_peak(capsys: pytest.CaptureFixture[str]) -> None:
    out = _quick(capsys)
    assert "matmul peak" in out
    assert "1 threads" in out
    header = next(line for line in out.splitlines() if line.startswith("config"))
    for col in ("planner", "mode", "device", "median ms", "p90 ms", "rollouts/s", "GFLOP/s"):
        assert col in header
    assert sum(" eager " in line for line in out.splitlines()) == 3


def test_flop_counter_matches_hand_count_on_tiny_mlp() -> None:
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    flops, out = bench.count_matmul_flops(mlp, torch.randn(5, 3))
    assert out.shape == (5, 2)
    assert flops == 2 * 5 * 3 * 4 + 2 * 5 * 4 * 2 == bench.mlp_flops(5, [3, 4, 2])


def _tdmpc2_flops_per_call(size: bench.TDMPC2Size, batch: int, horizon: int, heads: int) -> int:
    lat, m, a, k = size.latent_dim, size.mlp_dim, size.action_dim, size.num_bins
    per_step = bench.mlp_flops(batch, [lat + a, m, m, lat]) + bench.mlp_flops(
        batch, [lat + a, m, m, k]
    )
    terminal = bench.mlp_flops(batch, [lat, m, m, 2 * a]) + heads * bench.mlp_flops(
        batch, [lat + a, m, m, k]
    )
    two_hot = (horizon + heads) * 2 * batch * k * 2  # exp(x) @ [bins, 1]
    return horizon * per_step + terminal + two_hot


def test_counted_flops_match_architecture() -> None:
    ref = TDMPC2Reference(TINY, seed=0)
    fused = TDMPC2Fused(ref)
    actions = torch.rand(7, 3, TINY.action_dim) * 2 - 1
    noise = ref.draw_noise(7, 3, torch.Generator().manual_seed(0))
    counted, _ = bench.count_matmul_flops(fused.rollout_cost, actions, noise)
    # the fused model multiplies the shared start latent by the first layers' z-part once
    # (1 row, not 7): dynamics and reward first layers are L×M each
    shared_start = 2 * (7 - 1) * TINY.latent_dim * 2 * TINY.mlp_dim
    assert counted == _tdmpc2_flops_per_call(TINY, 7, 3, heads=2) - shared_start
    # the reference runs every Q head (as tdmpc2 does) and no two-hot matmul
    counted_ref, _ = bench.count_matmul_flops(ref.rollout_cost, actions, noise)
    expect = (
        _tdmpc2_flops_per_call(TINY, 7, 3, heads=TINY.num_q) - (3 + TINY.num_q) * 2 * 7 * 101 * 2
    )
    assert counted_ref == expect


def test_tdmpc2_objective_shapes_and_determinism() -> None:
    model = TDMPC2Fused(TDMPC2Reference(TINY, seed=3))
    actions = torch.rand(11, 4, TINY.action_dim) * 2 - 1

    def costs(seed: int) -> torch.Tensor:
        return bench.objective(model, torch.Generator().manual_seed(seed))(actions)

    c = costs(0)
    assert c.shape == (11,)
    assert torch.isfinite(c).all()
    assert torch.equal(c, costs(0))
    assert not torch.equal(c, costs(1))  # the noise (policy action, Q heads) is drawn
    assert c.std() > 0  # the cost depends on the actions
    same_weights = TDMPC2Fused(TDMPC2Reference(TINY, seed=3))
    assert torch.equal(c, bench.objective(same_weights, torch.Generator().manual_seed(0))(actions))
    prior = model.prior(5, 4, torch.Generator().manual_seed(0))
    assert prior.shape == (5, 4, TINY.action_dim)
    assert prior.abs().max() <= 1


@pytest.mark.parametrize("seed", [0, 1])
def test_fused_tdmpc2_computes_the_reference_function(seed: int) -> None:
    ref = TDMPC2Reference(TINY, seed=seed)
    fused = TDMPC2Fused(ref)
    actions = torch.rand(9, 3, TINY.action_dim) * 2 - 1
    noise = ref.draw_noise(9, 3, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(fused.rollout_cost(actions, noise), ref.rollout_cost(actions, noise))
    z, r = fused.step(fused.initial_state().expand(9, -1), actions[:, 0], None)
    z_ref, r_ref = ref.step(ref.initial_state().expand(9, -1), actions[:, 0], None)
    torch.testing.assert_close(fused.to_reference_latent(z), z_ref)
    torch.testing.assert_close(r, r_ref)
    torch.testing.assert_close(
        fused.prior(4, 3, torch.Generator().manual_seed(2)),
        ref.prior(4, 3, torch.Generator().manual_seed(2)),
    )


def test_fused_rssm_computes_the_reference_function() -> None:
    ref = RSSMReference(bench.RSSMSize(belief_dim=20, state_dim=5, hidden_dim=12), seed=0)
    fused = RSSMFused(ref)
    actions = torch.rand(6, 5, ref.action_dim) * 2 - 1
    noise = ref.draw_noise(6, 5, torch.Generator().manual_seed(0))
    cost = fused.rollout_cost(actions, noise)
    assert cost.shape == (6,)
    torch.testing.assert_close(cost, ref.rollout_cost(actions, noise))


def test_every_case_and_planner_option_set_builds() -> None:
    from wm_planning import planners

    for name in bench.cases():
        case = bench.get_case(name)
        for planner in ("mppi", "cem", "icem", "random_shooting", "gradient"):
            planners.make(planner, **bench.options_for(planner, case))


def test_bench_train_times_real_updates(capsys: pytest.CaptureFixture[str]) -> None:
    """``wm-plan bench train``: one row per mode with the update timing columns (eager here;
    the compiled path is checked against eager in test_training)."""
    argv = ["bench", "train", "--model", "tdmpc2_tiny", "--mode", "eager", "--repeats", "2"]
    assert main([*argv, "--warmup", "0", "--threads", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    r = rows[0]
    assert (r["model"], r["env"], r["mode"], r["threads"]) == (
        "tdmpc2_tiny",
        "planar-reach",
        "eager",
        1,
    )
    assert (r["batch"], r["seq_len"]) == (256, 3)
    assert 0 < r["median_ms"] <= r["p90_ms"]
    assert r["updates_per_s"] == pytest.approx(1e3 / r["median_ms"])

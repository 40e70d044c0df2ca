"""Planners against a problem with a known optimum (finite-horizon LQR), plus determinism, bounds,
warm starts, priors, NaN handling, the registry and the Hydra YAMLs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from wm_planning import planners
from wm_planning.config import load_group
from wm_planning.control import Controller
from wm_planning.planners.noise import ColoredNoise

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "planner"
NAMES = ["cem", "gradient", "icem", "mppi", "random_shooting"]


# -- LQR problem: x_{t+1} = A x_t + B u_t, cost Σ_{t<H} x'Qx + u'Ru + x_H' Qf x_H -------------------
H, N_X, N_U = 10, 4, 3
A_DYN = torch.tensor(
    [[1.0, 0.1, 0.0, 0.0], [0.0, 1.0, 0.1, 0.0], [0.0, 0.0, 1.0, 0.1], [0.05, 0.0, 0.0, 1.02]],
    dtype=torch.float64,
)  # open-loop unstable (eigenvalue > 1): doing nothing is expensive
B_DYN = torch.tensor(
    [[0.0, 0.1, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.1], [0.1, 0.05, 0.1]], dtype=torch.float64
)
Q = torch.diag(torch.tensor([1.0, 2.0, 1.0, 0.5], dtype=torch.float64))
R = 0.1 * torch.eye(N_U, dtype=torch.float64)
QF = 10 * torch.eye(N_X, dtype=torch.float64)
X0 = torch.tensor([1.0, -1.0, 0.5, 1.5], dtype=torch.float64)
BOX = {"horizon": H, "action_low": [-10.0] * N_U, "action_high": [10.0] * N_U}  # never binds


def riccati(x0: Tensor, horizon: int = H) -> tuple[Tensor, float]:
    """Optimal open-loop actions ``H×A`` and optimal cost from the backward Riccati recursion."""
    p = QF
    gains = []
    for _ in range(horizon):
        k = torch.linalg.solve(R + B_DYN.T @ p @ B_DYN, B_DYN.T @ p @ A_DYN)
        p = Q + A_DYN.T @ p @ (A_DYN - B_DYN @ k)
        gains.append(k)
    x, actions = x0, []
    for k in reversed(gains):
        u = -k @ x
        actions.append(u)
        x = A_DYN @ x + B_DYN @ u
    return torch.stack(actions), float(x0 @ p @ x0)


def lqr_objective(x0: Tensor, horizon: int = H) -> Callable[[Tensor], Tensor]:
    """Batched, differentiable rollout cost ``B×H×A -> B`` as one linear map: the states
    ``x_0..x_H`` are ``free + U @ M`` with ``U`` the flattened actions."""
    free = torch.stack([torch.linalg.matrix_power(A_DYN, t) @ x0 for t in range(horizon + 1)])
    m = torch.zeros(horizon * N_U, horizon + 1, N_X, dtype=torch.float64)
    for t in range(1, horizon + 1):
        for s in range(t):
            m[s * N_U : (s + 1) * N_U, t] = (torch.linalg.matrix_power(A_DYN, t - 1 - s) @ B_DYN).T
    weights = torch.stack([Q] * horizon + [QF])  # (H+1)×N×N
    free32, m32 = free.float(), m.reshape(horizon * N_U, -1).float()
    w32, r32 = weights.float(), R.float()

    def objective(actions: Tensor) -> Tensor:
        states = free32 + (actions.reshape(actions.shape[0], -1) @ m32).reshape(
            -1, horizon + 1, N_X
        )
        state_cost = torch.einsum("bti,tij,btj->b", states, w32, states)
        return state_cost + torch.einsum("bti,ij,btj->b", actions, r32, actions)

    return objective


U_OPT, J_OPT = riccati(X0)
LQR = lqr_objective(X0)

# Budgets for 1% of the optimum (worst of seeds 0-19 measured at 0.3%); sampling planners score
# 300×30 = 9000 sequences.
LQR_SPECS: dict[str, dict[str, Any]] = {
    "cem": {"population": 300, "elites": 30, "iterations": 30, "init_std": 0.3},
    "icem": {
        "population": 300,
        "elites": 30,
        "iterations": 30,
        "population_decay": 1.0,
        "noise_beta": 0.0,  # the LQR optimum is not smooth in time
        "init_std": 0.3,
    },
    "mppi": {
        "num_samples": 300,
        "num_elites": 30,
        "iterations": 30,
        "temperature": 20.0,  # ~ the optimal cost (19.6): weights stay spread
        "init_std": 0.3,
        "min_std": 0.001,
        "max_std": 1.0,
    },
    "gradient": {"iterations": 100, "lr": 0.2, "num_starts": 4},
}

# Small budgets for the property tests.
SMALL: dict[str, dict[str, Any]] = {
    "cem": {"population": 64, "elites": 8, "iterations": 3},
    "icem": {"population": 64, "elites": 8, "iterations": 3, "noise_beta": 1.0},
    "mppi": {"num_samples": 64, "num_elites": 8, "iterations": 3, "temperature": 5.0},
    "gradient": {"iterations": 5, "lr": 0.1, "num_starts": 3},
    "random_shooting": {"num_samples": 64},
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gap(cost: Tensor | float, optimum: float = J_OPT) -> float:
    return (float(cost) - optimum) / optimum


# -- optimality ------------------------------------------------------------------------------------
def test_lqr_reference_is_consistent() -> None:
    """The test's own objective reproduces the Riccati cost and zero actions are far worse."""
    assert float(LQR(U_OPT.float()[None])[0]) == pytest.approx(J_OPT, rel=1e-5)
    assert float(LQR(torch.zeros(1, H, N_U))[0]) > 5 * J_OPT
    assert U_OPT.abs().max() < 5  # the ±10 box does not bind


@pytest.mark.parametrize("name", sorted(LQR_SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_lqr_within_one_percent(name: str, seed: int) -> None:
    result = planners.make(name, **BOX, **LQR_SPECS[name])(LQR, generator=gen(seed))
    assert -1e-5 < gap(result.cost) < 0.01, f"{name}: {100 * gap(result.cost):.3f}% above optimum"
    # the reported cost is the objective's cost of the returned actions
    assert float(result.cost) == pytest.approx(float(LQR(result.actions[None])[0]), rel=1e-5)


def test_random_shooting_is_worse_at_same_budget() -> None:
    budget = 300 * 30 + 1  # what CEM/MPPI spend in LQR_SPECS (+ the final mean)
    cem = planners.make("cem", **BOX, **LQR_SPECS["cem"])(LQR, generator=gen(0))
    assert int(cem.info["num_evaluated"]) == budget
    result = planners.make("random_shooting", **BOX, num_samples=budget)(LQR, generator=gen(0))
    assert int(result.info["num_evaluated"]) == budget
    assert gap(result.cost) > 0.05


def test_gradient_tanh_and_sgd_and_cem_init() -> None:
    for options in (
        {"bounds_method": "tanh", "lr": 0.05, "iterations": 100},
        {"optimizer": "sgd", "lr": 0.04, "iterations": 200},
        {"cem_init_iterations": 5, "cem_population": 100, "cem_elites": 10, "iterations": 100},
    ):
        result = planners.make("gradient", **BOX, num_starts=2, **options)(LQR, generator=gen(0))
        assert gap(result.cost) < 0.01, options
    warm = planners.make("gradient", **BOX, cem_init_iterations=3, iterations=1)(
        LQR, generator=gen(0)
    )
    assert warm.info["cem_best_cost"].shape == (3,)
    assert int(warm.info["num_evaluated"]) == 256 * 3 + 1 + 8 * 2


def test_gradient_rejects_non_differentiable_objective() -> None:
    plan = planners.make("gradient", **BOX, iterations=2)
    with pytest.raises(TypeError, match="differentiable"):
        plan(lambda u: LQR(u).detach(), generator=gen(0))


# -- diagnostics, determinism --------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_result_shapes_and_info(name: str) -> None:
    result = planners.make(name, **BOX, **SMALL[name])(LQR, generator=gen(0))
    assert result.actions.shape == (H, N_U)
    assert result.cost.shape == ()
    iterations = SMALL[name].get("iterations", 1) + (1 if name == "gradient" else 0)
    for key in ("best_cost", "mean_cost", "std"):
        assert result.info[key].shape == (iterations,), key
        assert torch.isfinite(result.info[key]).all(), key
    assert (result.info["best_cost"] <= result.info["mean_cost"]).all()
    assert int(result.info["num_evaluated"]) > 0
    for value in result.carry.values():
        assert value.shape[-2:] == (H, N_U)


def test_icem_population_schedule_and_carry() -> None:
    cfg = {"population": 100, "elites": 10, "iterations": 4, "population_decay": 2.0}
    plan = planners.make("icem", **BOX, **cfg)
    assert isinstance(plan.config, planners.ICEMConfig)
    assert [plan.config.samples_at(i) for i in range(4)] == [100, 50, 25, 20]  # floor at 2K
    first = plan(LQR, generator=gen(0))
    # fresh samples, + 3 kept elites from iteration 1 on, + the mean at the last iteration
    assert int(first.info["num_evaluated"]) == 195 + 3 * 3 + 1
    assert first.carry["elites"].shape == (3, H, N_U)
    second = plan(LQR, generator=gen(0), carry=first.carry)
    assert int(second.info["num_evaluated"]) == 195 + 3 * 4 + 1
    # the carried elites are evaluated at iteration 0, so the first best can only improve
    assert float(second.info["best_cost"][0]) <= float(LQR(first.carry["elites"]).min()) + 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_result_different_seed_differs(name: str) -> None:
    plan = planners.make(name, **BOX, **SMALL[name])
    a, b, c = (plan(LQR, generator=gen(s)) for s in (7, 7, 8))
    assert torch.equal(a.actions, b.actions)
    assert torch.equal(a.cost, b.cost)
    for key in ("best_cost", "mean_cost", "std"):
        assert torch.equal(a.info[key], b.info[key])
    assert not torch.equal(a.info["mean_cost"], c.info["mean_cost"])
    if name != "gradient":  # the gradient planner's first start is the warm start itself
        assert not torch.equal(a.actions, c.actions)


def test_mppi_sample_selection_is_seeded_and_scored() -> None:
    plan = planners.make("mppi", **BOX, **SMALL["mppi"], select="sample", carry_std=True)
    a, b = plan(LQR, generator=gen(3)), plan(LQR, generator=gen(3))
    assert torch.equal(a.actions, b.actions)
    assert float(a.cost) == pytest.approx(float(LQR(a.actions[None])[0]), rel=1e-5)
    assert a.carry["std"].shape == (H, N_U)
    # a carried std restarts the search narrow: the first iteration's std equals it
    c = plan(LQR, generator=gen(3), carry={"std": torch.full((H, N_U), 0.5)})
    assert float(c.info["std"][0]) == pytest.approx(0.5)


def test_colored_noise_unit_variance_and_smoothness() -> None:
    def lag1(x: Tensor) -> float:
        return float((x[:, 1:] * x[:, :-1]).mean() / x.var())

    white = ColoredNoise(0.0, 16, torch.device("cpu")).sample(4000, 2, gen(0))
    red = ColoredNoise(2.0, 16, torch.device("cpu")).sample(4000, 2, gen(0))
    assert red.shape == (4000, 16, 2)
    assert float(red.var(0).mean()) == pytest.approx(1.0, abs=0.05)
    assert abs(lag1(white)) < 0.05 < 0.5 < lag1(red)


# -- bounds ----------------------------------------------------------------------------------------
ASYM = {"horizon": 5, "action_low": [-0.3, 0.2], "action_high": [0.1, 1.5]}


def _outside_box_objective(seen: list[Tensor]) -> Callable[[Tensor], Tensor]:
    """Differentiable cost whose minimum (5, -5) lies outside the box; records every input."""
    target = torch.tensor([5.0, -5.0])

    def objective(actions: Tensor) -> Tensor:
        seen.append(actions.detach().clone())
        return (actions - target).square().sum((1, 2))

    return objective


@pytest.mark.parametrize(
    ("name", "extra"),
    [(n, {}) for n in NAMES]
    + [
        ("gradient", {"bounds_method": "tanh"}),
        ("mppi", {"select": "sample"}),
        ("cem", {"return_best": True}),
        ("random_shooting", {"local_width": 0.5}),
    ],
)
def test_bounds_never_violated(name: str, extra: dict[str, Any]) -> None:
    seen: list[Tensor] = []
    plan = planners.make(name, **ASYM, **{**SMALL[name], **extra})
    low, high = torch.tensor(ASYM["action_low"]), torch.tensor(ASYM["action_high"])
    prior = torch.tensor([[3.0, -3.0]]).expand(2, 5, 2)  # outside: must be clamped
    init = torch.tensor([[-2.0, 4.0]]).expand(5, 2)  # outside: must be clamped
    result = plan(_outside_box_objective(seen), init, generator=gen(0), prior=prior)
    for actions in [*seen, result.actions[None]]:
        assert (actions >= low).all()
        assert (actions <= high).all()
    # the optimum in the box is the corner (high[0], low[1]); planners should get near it
    assert float(result.actions[:, 0].min()) > -0.3
    assert float(result.actions[:, 1].max()) < 1.5
    ctrl = Controller(plan, generator=gen(0), replan_every=2)
    for _ in range(4):
        action = ctrl.act(_outside_box_objective([]))
        assert (action >= low).all()
        assert (action <= high).all()


# -- warm start ------------------------------------------------------------------------------------
def _iterations_to(best_cost: Tensor, threshold: float) -> int:
    hits = (best_cost <= threshold).nonzero()
    return int(hits[0, 0]) + 1 if len(hits) else math.inf  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        # CEM keeps no state besides the mean: warm starting pays off with local noise
        ("cem", {"init_std": 0.05}),
        # iCEM scores the shifted elites from carry at its first iteration
        ("icem", {}),
        # MPPI carries its final (narrow) std along with the shifted mean
        ("mppi", {"carry_std": True}),
    ],
)
def test_warm_start_reaches_threshold_in_fewer_iterations(name: str, extra: dict[str, Any]) -> None:
    """Receding horizon on LQR: plan at x0, execute one action through the controller, then plan
    at x1 from the controller's shifted warm start (and carry) versus from scratch."""
    plan = planners.make(name, **BOX, **{**LQR_SPECS[name], **extra})
    ctrl = Controller(plan, generator=gen(0), replan_every=1)
    u0 = ctrl.act(LQR).double()
    x1 = A_DYN @ X0 + B_DYN @ u0
    objective1 = lqr_objective(x1)
    _, j1 = riccati(x1)
    assert ctrl.warm_start is not None
    threshold = j1 * 1.02
    warm = plan(objective1, ctrl.warm_start, generator=gen(1), carry=ctrl.carry())
    cold = plan(objective1, generator=gen(1))
    n_warm = _iterations_to(warm.info["best_cost"], threshold)
    n_cold = _iterations_to(cold.info["best_cost"], threshold)
    assert n_warm < n_cold, (n_warm, n_cold)
    assert gap(warm.cost, j1) < 0.01
    print(f"{name}: iterations to 2% of optimum: warm {n_warm}, cold {n_cold}")


def test_gradient_warm_start_needs_fewer_iterations() -> None:
    plan = planners.make("gradient", **BOX, **LQR_SPECS["gradient"])
    ctrl = Controller(plan, generator=gen(0), replan_every=1)
    x1 = A_DYN @ X0 + B_DYN @ ctrl.act(LQR).double()
    objective1, (_, j1) = lqr_objective(x1), riccati(x1)
    warm = plan(objective1, ctrl.warm_start, generator=gen(1))
    cold = plan(objective1, generator=gen(1))
    threshold = j1 * 1.01
    assert _iterations_to(warm.info["best_cost"], threshold) < _iterations_to(
        cold.info["best_cost"], threshold
    )


# -- prior, NaN ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("mppi", {"num_samples": 64, "num_elites": 8, "iterations": 2, "temperature": 0.2}),
        ("mppi", {"num_samples": 64, "num_elites": None, "iterations": 2, "temperature": 0.2}),
        ("cem", {"population": 64, "elites": 8, "iterations": 2, "return_best": True}),
        ("icem", {"population": 64, "elites": 8, "iterations": 2}),
        ("random_shooting", {"num_samples": 64}),
    ],
)
def test_optimal_prior_is_returned(name: str, options: dict[str, Any]) -> None:
    plan = planners.make(name, **BOX, **options)
    prior = torch.cat([U_OPT.float()[None], torch.zeros(1, H, N_U)])
    with_prior = plan(LQR, generator=gen(0), prior=prior)
    without = plan(LQR, generator=gen(0))
    assert gap(with_prior.cost) < 1e-3
    assert gap(without.cost) > 0.1  # the budget alone is far from enough
    assert float((with_prior.actions - U_OPT.float()).abs().max()) < 0.1  # |u*| reaches 3.6


def test_prior_must_leave_room_for_samples() -> None:
    plan = planners.make("mppi", **BOX, num_samples=4, num_elites=2)
    with pytest.raises(ValueError, match="prior"):
        plan(LQR, generator=gen(0), prior=torch.zeros(4, H, N_U))
    with pytest.raises(ValueError, match="prior must be"):
        plan(LQR, generator=gen(0), prior=torch.zeros(2, H + 1, N_U))


@pytest.mark.parametrize(
    ("name", "extra"),
    [(n, {}) for n in NAMES] + [("mppi", {"select": "sample"}), ("cem", {"return_best": True})],
)
def test_nan_costs_never_selected(name: str, extra: dict[str, Any]) -> None:
    """NaN wherever u[0, 0] > -0.5, a half-space holding the optimum (u*[0, 0] ≈ 1.2)."""
    assert U_OPT[0, 0] > 0

    def objective(actions: Tensor) -> Tensor:
        cost = LQR(actions)
        return torch.where(actions[:, 0, 0] > -0.5, torch.nan, cost)

    init = torch.zeros(H, N_U)
    init[:, 0] = -2.0  # start where costs are finite
    result = planners.make(name, **BOX, **{**SMALL[name], **extra})(
        objective, init, generator=gen(0)
    )
    assert torch.isfinite(result.cost)
    assert float(result.actions[0, 0]) <= -0.5
    assert (result.info["best_cost"] < math.inf).all()


@pytest.mark.parametrize("name", NAMES)
def test_all_nan_objective_still_returns_bounded_plan(name: str) -> None:
    plan = planners.make(name, **ASYM, **SMALL[name])
    result = plan(lambda u: u.sum((1, 2)) * torch.nan, generator=gen(0))
    assert result.cost == math.inf
    assert torch.isfinite(result.actions).all()
    low, high = torch.tensor(ASYM["action_low"]), torch.tensor(ASYM["action_high"])
    assert (result.actions >= low).all()
    assert (result.actions <= high).all()


def test_objective_with_wrong_shape_is_rejected() -> None:
    plan = planners.make("cem", **BOX, **SMALL["cem"])
    with pytest.raises(ValueError, match="B costs"):
        plan(lambda u: u.sum(-1), generator=gen(0))


# -- registry and configs --------------------------------------------------------------------------
def test_registry_lists_all_planners() -> None:
    assert set(NAMES) <= set(planners.available())
    assert planners.get("gradient").needs_gradients
    assert not any(planners.get(n).needs_gradients for n in NAMES if n != "gradient")


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="num_sample"):
        planners.make("mppi", **BOX, num_sample=10)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("cem", {"population": -1}, "population"),
        ("cem", {"population": 10, "elites": 11}, "elites"),
        ("cem", {"elites": 0}, "elites"),
        ("cem", {"iterations": 0}, "iterations"),
        ("cem", {"alpha": 1.0}, "alpha"),
        ("cem", {"init_std": 0.0}, "init_std"),
        ("icem", {"population": 10, "elites": 20}, "elites"),
        ("icem", {"population_decay": 0.5}, "population_decay"),
        ("icem", {"noise_beta": -1.0}, "noise_beta"),
        ("icem", {"keep_elites": 1.5}, "keep_elites"),
        ("mppi", {"num_samples": 0}, "num_samples"),
        ("mppi", {"num_samples": 10, "num_elites": 11}, "num_elites"),
        ("mppi", {"temperature": 0.0}, "temperature"),
        ("mppi", {"min_std": 1.0, "max_std": 0.5}, "min_std"),
        ("mppi", {"select": "best"}, "select"),
        ("gradient", {"lr": -0.1}, "lr"),
        ("gradient", {"optimizer": "lbfgs"}, "optimizer"),
        ("gradient", {"num_starts": 0}, "num_starts"),
        ("gradient", {"bounds_method": "sigmoid"}, "bounds_method"),
        ("random_shooting", {"num_samples": -5}, "num_samples"),
        ("random_shooting", {"local_width": 0.0}, "local_width"),
        ("cem", {"horizon": 0}, "horizon"),
        ("cem", {"action_low": [1.0, 0.0, 0.0]}, "low < high"),  # low >= high in dim 0
        ("mppi", {"action_low": [0.0, 0.0]}, "equal length"),
    ],
)
def test_invalid_config_is_a_value_error(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        planners.make(name, **{**BOX, "action_high": [1.0] * N_U, **options})


def test_init_mean_shape_is_checked() -> None:
    plan = planners.make("cem", **BOX, **SMALL["cem"])
    with pytest.raises(ValueError, match="init_mean"):
        plan(LQR, torch.zeros(H - 1, N_U), generator=gen(0))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_from_config_builds_every_yaml(path: Path) -> None:
    cfg = load_group("planner", path.stem)
    horizon = cfg.get("horizon", 4)
    plan = planners.from_config(cfg, horizon=horizon, action_low=[-1.0] * 2, action_high=[1.0] * 2)
    assert plan.name == cfg["name"]
    for key, value in cfg.items():
        if key != "name":
            assert getattr(plan.config, key) == value, key
    result = plan(lambda u: u.square().sum((1, 2)), generator=gen(0))
    assert result.actions.shape == (horizon, 2)
    # an OmegaConf DictConfig (lists arrive as ListConfig) works the same
    omega = OmegaConf.load(path)
    assert isinstance(omega, DictConfig)
    from_omegaconf = planners.from_config(
        omega, horizon=horizon, action_low=[-1.0] * 2, action_high=[1.0] * 2
    )
    assert from_omegaconf.config == plan.config


def test_presets_match_their_papers() -> None:
    planet = planners.from_config(
        yaml.safe_load((CONFIGS / "planet_cem.yaml").read_text()), action_low=[-1], action_high=[1]
    )
    cem_cfg = planet.config
    assert isinstance(cem_cfg, planners.CEMConfig)
    assert (cem_cfg.horizon, cem_cfg.population, cem_cfg.elites, cem_cfg.iterations) == (
        12,
        1000,
        100,
        10,
    )
    tdmpc2 = planners.from_config(
        yaml.safe_load((CONFIGS / "tdmpc2_mppi.yaml").read_text()), action_low=[-1], action_high=[1]
    )
    c = tdmpc2.config
    assert isinstance(c, planners.MPPIConfig)
    assert (c.horizon, c.num_samples, c.num_elites, c.iterations) == (3, 512, 64, 6)
    assert (c.init_std, c.min_std, c.max_std, c.temperature, c.select) == (
        2.0,
        0.05,
        2.0,
        2.0,
        "sample",
    )


def test_from_config_errors_and_overrides() -> None:
    with pytest.raises(ValueError, match="name"):
        planners.from_config({"population": 3}, **BOX)
    with pytest.raises(ValueError, match="horizon"):
        planners.from_config({"name": "cem"}, action_low=[0], action_high=[1])
    with pytest.raises(KeyError, match="unknown planner"):
        planners.from_config({"name": "nope"}, **BOX)
    plan = planners.from_config({"name": "cem", "horizon": 3, "elites": 5}, **BOX, elites=7)
    assert isinstance(plan.config, planners.CEMConfig)
    assert plan.config.horizon == H
    assert plan.config.elites == 7

"""Reference configurations and how each planner is configured for them.

A :class:`BenchCase` is a synthetic model of a real size plus the planning budget the paper it
comes from uses. Cases and planner-option adapters register by decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import (
    TDMPC2_1M,
    TDMPC2_5M,
    RSSMFused,
    RSSMReference,
    RSSMSize,
    SyntheticModel,
    TDMPC2Fused,
    TDMPC2Reference,
    TDMPC2Size,
)

#: model implementation name -> builder(seed) for one case
ModelBuilders = dict[str, Callable[[int], SyntheticModel]]


@dataclass(frozen=True)
class BenchCase:
    """A reference configuration.

    num_samples: sequences scored per iteration, *including* ``num_prior`` policy trajectories.
    temperature: MPPI λ (cost divisor, pytorch_mppi's ``lambda_``).
    """

    name: str
    description: str
    models: ModelBuilders
    action_dim: int
    horizon: int
    num_samples: int
    iterations: int
    num_elites: int
    num_prior: int = 0
    temperature: float = 2.0
    init_std: float = 2.0
    min_std: float = 0.05
    max_std: float = 2.0

    @property
    def action_low(self) -> tuple[float, ...]:
        return (-1.0,) * self.action_dim

    @property
    def action_high(self) -> tuple[float, ...]:
        return (1.0,) * self.action_dim


_CASES: dict[str, Callable[[], BenchCase]] = {}


def bench_case(name: str) -> Callable[[Callable[[], BenchCase]], Callable[[], BenchCase]]:
    """Register a zero-argument factory returning the :class:`BenchCase` called ``name``."""

    def deco(fn: Callable[[], BenchCase]) -> Callable[[], BenchCase]:
        if name in _CASES:
            raise ValueError(f"bench case {name!r} registered twice")
        _CASES[name] = fn
        return fn

    return deco


def cases() -> list[str]:
    return list(_CASES)


def get_case(name: str) -> BenchCase:
    try:
        return _CASES[name]()
    except KeyError:
        raise KeyError(f"unknown bench config {name!r}; available: {', '.join(_CASES)}") from None


def _tdmpc2_models(size: TDMPC2Size) -> ModelBuilders:
    return {
        "fused": lambda seed: TDMPC2Fused(TDMPC2Reference(size, seed)),
        "reference": lambda seed: TDMPC2Reference(size, seed),
    }


def _tdmpc2_case(name: str, size: TDMPC2Size, what: str) -> BenchCase:
    # tdmpc2 config.yaml: iterations 6, num_samples 512, num_elites 64, num_pi_trajs 24,
    # horizon 3, min_std 0.05, max_std 2, temperature 0.5 (multiplies value -> λ = 2).
    return BenchCase(
        name=name,
        description=f"TD-MPC2 {what} (latent {size.latent_dim}, MLP {size.mlp_dim}, "
        f"{size.num_q} Q heads), 512 samples incl. 24 prior, H=3, 6 iterations, top 64",
        models=_tdmpc2_models(size),
        action_dim=size.action_dim,
        horizon=3,
        num_samples=512,
        iterations=6,
        num_elites=64,
        num_prior=24,
        temperature=2.0,
        init_std=2.0,
    )


@bench_case("tdmpc2-5m")
def _tdmpc2_5m() -> BenchCase:
    return _tdmpc2_case("tdmpc2-5m", TDMPC2_5M, "5M")


@bench_case("tdmpc2-1m")
def _tdmpc2_1m() -> BenchCase:
    return _tdmpc2_case("tdmpc2-1m", TDMPC2_1M, "1M")


@bench_case("planet")
def _planet() -> BenchCase:
    size = RSSMSize()
    return BenchCase(
        name="planet",
        description="PlaNet RSSM (GRU 200, stochastic 30, MLP 200), 1000 candidates, H=12, "
        "10 iterations, top 100",
        models={
            "fused": lambda seed: RSSMFused(RSSMReference(size, seed)),
            "reference": lambda seed: RSSMReference(size, seed),
        },
        action_dim=size.action_dim,
        horizon=12,
        num_samples=1000,
        iterations=10,
        num_elites=100,
        temperature=1.0,
        init_std=1.0,
    )


@bench_case("tiny")
def _tiny() -> BenchCase:
    """Small enough for tests: a TD-MPC2 of width 32."""
    size = TDMPC2Size(latent_dim=32, mlp_dim=32, action_dim=2, num_q=3)
    return BenchCase(
        name="tiny",
        description="TD-MPC2 architecture at width 32 (tests)",
        models=_tdmpc2_models(size),
        action_dim=2,
        horizon=3,
        num_samples=32,
        iterations=2,
        num_elites=8,
        num_prior=4,
    )


# -- planner options ------------------------------------------------------------------------------
PlannerOptions = Callable[[BenchCase], dict[str, Any]]
_OPTIONS: dict[str, PlannerOptions] = {}


def planner_options(name: str) -> Callable[[PlannerOptions], PlannerOptions]:
    """Register how planner ``name`` spends a case's budget (its ``make`` options beyond
    horizon and bounds)."""

    def deco(fn: PlannerOptions) -> PlannerOptions:
        _OPTIONS[name] = fn
        return fn

    return deco


def options_for(planner: str, case: BenchCase) -> dict[str, Any]:
    try:
        extra = _OPTIONS[planner](case)
    except KeyError:
        raise KeyError(
            f"no benchmark options for planner {planner!r}; register them with "
            f"@planner_options({planner!r}) in wm_planning/bench/cases.py"
        ) from None
    return {
        "horizon": case.horizon,
        "action_low": case.action_low,
        "action_high": case.action_high,
        **extra,
    }


@planner_options("mppi")
def _mppi(c: BenchCase) -> dict[str, Any]:
    return {
        "num_samples": c.num_samples,
        "num_elites": c.num_elites,
        "iterations": c.iterations,
        "temperature": c.temperature,
        "init_std": c.init_std,
        "min_std": c.min_std,
        "max_std": c.max_std,
    }


# iCEM takes CEM's options; it shrinks its population each iteration, so it scores fewer
# sequences than CEM for the same options.
@planner_options("icem")
@planner_options("cem")
def _cem(c: BenchCase) -> dict[str, Any]:
    return {
        "population": c.num_samples,
        "elites": c.num_elites,
        "iterations": c.iterations,
        "init_std": c.init_std,
        "min_std": c.min_std,
    }


@planner_options("random_shooting")
def _random_shooting(c: BenchCase) -> dict[str, Any]:
    # The same number of rollouts as the iterative planners, in one batch.
    return {"num_samples": c.num_samples * c.iterations}


@planner_options("gradient")
def _gradient(c: BenchCase) -> dict[str, Any]:
    # One forward+backward over num_elites starts per iteration.
    return {"num_starts": c.num_elites, "iterations": c.iterations}

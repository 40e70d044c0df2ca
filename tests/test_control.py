"""Receding-horizon controller: replanning cadence, warm-start and carry shifting, queue, skip,
reset and clamping. A scripted planner makes every plan known in advance."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from wm_planning import planners
from wm_planning.control import Controller, shift_time
from wm_planning.planners import Planner, PlannerConfig, PlanResult

H, A = 4, 2
LOW, HIGH = (-1.0, 0.0), (1.0, 2.0)


class Scripted(Planner):
    """Plan ``k`` (0-based) is ``actions[t, a] = 100k + 10t + a`` unless ``plans`` overrides it;
    records what every call received. Carry: an ``H×A`` copy of the plan and a ``2×H×1`` tensor."""

    def __init__(self, plans: list[Tensor] | None = None) -> None:
        super().__init__(PlannerConfig(horizon=H, action_low=LOW, action_high=HIGH))
        self.plans = plans
        self.calls: list[dict[str, Any]] = []

    def _plan(self, objective, start, *, generator, carry):  # type: ignore[no-untyped-def]
        raise AssertionError("Scripted overrides __call__ to see the raw warm start and carry")

    def __call__(
        self,
        objective: planners.Objective,
        init_mean: Tensor | None = None,
        *,
        generator: torch.Generator,
        prior: Tensor | None = None,
        carry: dict[str, Tensor] | None = None,
    ) -> PlanResult:
        k = len(self.calls)
        self.calls.append({"init_mean": init_mean, "carry": carry, "prior": prior})
        if self.plans is not None:
            actions = self.plans[k]
        else:
            t = torch.arange(H, dtype=torch.float32)[:, None]
            actions = 100 * k + 10 * t + torch.arange(A, dtype=torch.float32)
        time_index = torch.arange(H, dtype=torch.float32)[None, :, None] + 100 * k
        carry_out = {"plan": actions.clone(), "stack": time_index.expand(2, H, 1).clone()}
        return PlanResult(actions, torch.zeros(()), {}, carry_out)


def _raw(k: int) -> Tensor:
    t = torch.arange(H, dtype=torch.float32)[:, None]
    return 100 * k + 10 * t + torch.arange(A, dtype=torch.float32)


def _zero_objective(actions: Tensor) -> Tensor:
    return actions.sum((1, 2)) * 0


def _unbounded(k: int) -> Tensor:
    """Plans inside a wide box so clamping is visible only where intended."""
    return torch.full((H, A), 0.5) + 0.01 * _raw(k) / 100


def test_shift_time() -> None:
    x = torch.arange(12.0).reshape(1, 4, 3)
    assert torch.equal(shift_time(x, 0), x)
    assert torch.equal(
        shift_time(x, 1)[0], torch.tensor([[3, 4, 5], [6, 7, 8], [9, 10, 11], [9, 10, 11.0]])
    )
    fill = torch.tensor([-1.0, -2.0, -3.0])
    shifted = shift_time(x, 3, fill)[0]
    assert torch.equal(shifted[0], x[0, 3])
    assert torch.equal(shifted[1:], fill.expand(3, 3))
    assert torch.equal(shift_time(x, 9, fill)[0], fill.expand(4, 3))
    with pytest.raises(ValueError, match="steps"):
        shift_time(x, -1)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_replans_every_k_steps_and_executes_plan_in_order(k: int) -> None:
    plans = [_unbounded(i) for i in range(10)]
    planner = Scripted(plans)
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=k)
    executed = [ctrl.act(_zero_objective) for _ in range(2 * k + 1)]
    assert len(planner.calls) == 3  # at steps 0, k, 2k
    for step, action in enumerate(executed):
        assert torch.equal(action, plans[step // k][step % k])


def test_warm_start_and_carry_are_shifted_by_executed_steps() -> None:
    planner = Scripted(None)
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=3, tail="repeat")
    assert ctrl.warm_start is None
    assert ctrl.carry() == {}
    ctrl.act(_zero_objective)
    assert planner.calls[0]["init_mean"] is None
    for _ in range(2):
        ctrl.act(_zero_objective)
    ctrl.act(_zero_objective)  # 4th step: replans after 3 executed
    first = torch.clamp(_raw(0), torch.tensor(LOW), torch.tensor(HIGH))
    expected = torch.cat([first[3:], first[-1:].expand(3, A)])
    assert torch.equal(planner.calls[1]["init_mean"], expected)
    carry = planner.calls[1]["carry"]
    raw_plan = _raw(0)  # carry tensors are shifted as the planner returned them (not clamped)
    assert torch.equal(carry["plan"], torch.cat([raw_plan[3:], raw_plan[-1:].expand(3, A)]))
    assert carry["stack"].shape == (2, H, 1)
    assert carry["stack"][:, :, 0].tolist() == [[3.0, 3.0, 3.0, 3.0]] * 2


def test_centre_tail() -> None:
    planner = Scripted([_unbounded(0), _unbounded(1)])
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=2, tail="centre")
    ctrl.act(_zero_objective)
    ctrl.act(_zero_objective)
    warm = ctrl.warm_start
    assert warm is not None
    assert torch.equal(warm[:2], _unbounded(0)[2:])
    assert torch.equal(warm[2:], torch.tensor([[0.0, 1.0], [0.0, 1.0]]))


def test_queue_skip_and_reset() -> None:
    plans = [_unbounded(i) for i in range(5)]
    planner = Scripted(plans)
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=3)
    assert ctrl.queue.shape == (0, A)
    ctrl.act(_zero_objective)
    assert torch.equal(ctrl.queue, plans[0][1:3])
    ctrl.skip(1)  # a missed deadline: plans[0][1] is dropped
    assert torch.equal(ctrl.queue, plans[0][2:3])
    assert torch.equal(ctrl.act(_zero_objective), plans[0][2])
    assert ctrl.queue.shape == (0, A)
    ctrl.skip(2)  # more missed steps: the warm start shifts past them too (5 > H: all tail)
    ctrl.act(_zero_objective)
    assert torch.equal(planner.calls[1]["init_mean"], plans[0][-1:].expand(H, A))
    assert ctrl.last_result is not None
    assert ctrl.plan_time_s is not None
    assert ctrl.plan_time_s >= 0
    ctrl.reset()
    assert ctrl.last_result is None
    assert ctrl.warm_start is None
    assert ctrl.plan_time_s is None
    assert ctrl.queue.shape == (0, A)
    ctrl.act(_zero_objective)
    assert planner.calls[2]["init_mean"] is None
    assert planner.calls[2]["carry"] == {}
    with pytest.raises(ValueError, match="steps"):
        ctrl.skip(-1)


def test_actions_and_warm_start_are_clamped() -> None:
    planner = Scripted(None)  # plans far outside the box
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=2)
    low, high = torch.tensor(LOW), torch.tensor(HIGH)
    for _ in range(5):
        action = ctrl.act(_zero_objective)
        assert (action >= low).all()
        assert (action <= high).all()
    assert ctrl.warm_start is not None
    assert (ctrl.warm_start >= low).all()
    assert (ctrl.warm_start <= high).all()


def test_prior_is_passed_only_when_planning() -> None:
    planner = Scripted([_unbounded(i) for i in range(3)])
    ctrl = Controller(planner, generator=torch.Generator(), replan_every=2)
    prior = torch.zeros(1, H, A)
    ctrl.act(_zero_objective, prior=prior)
    ctrl.act(_zero_objective, prior=torch.ones(1, H, A))  # popped, planner not called
    assert len(planner.calls) == 1
    assert planner.calls[0]["prior"] is prior


def test_invalid_controller_options() -> None:
    for k in (0, H + 1):
        with pytest.raises(ValueError, match="replan_every"):
            Controller(Scripted(), generator=torch.Generator(), replan_every=k)
    with pytest.raises(ValueError, match="tail"):
        Controller(Scripted(), generator=torch.Generator(), tail="zeros")  # type: ignore[arg-type]


def test_closed_loop_with_real_planner_tracks_target() -> None:
    """A point mass x_{t+1} = x_t + u_t driven to a target through the controller with MPPI:
    replanning every 2 steps closes the loop, and iCEM carry elites survive the shifts."""
    target = torch.tensor([0.7, 1.8])
    for name, options in (
        ("mppi", {"num_samples": 128, "num_elites": 16, "iterations": 3, "temperature": 0.1}),
        ("icem", {"population": 64, "elites": 8, "iterations": 3}),
    ):
        plan = planners.make(name, horizon=H, action_low=LOW, action_high=HIGH, **options)
        ctrl = Controller(plan, generator=torch.Generator().manual_seed(0), replan_every=2)
        x = torch.zeros(2)
        for _ in range(8):
            start = x.clone()

            def objective(actions: Tensor, start: Tensor = start) -> Tensor:
                states = start + 0.25 * actions.cumsum(1)
                return (states - target).square().sum((1, 2))

            x = x + 0.25 * ctrl.act(objective)
        assert float((x - target).norm()) < 0.1, name
        assert ctrl.last_result is not None
        if name == "icem":
            assert ctrl.carry()["elites"].shape[1:] == (H, A)

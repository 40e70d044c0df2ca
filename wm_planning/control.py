"""Receding-horizon controller: owns the warm start and the action queue around a stateless
planner. Knows nothing of ROS or MuJoCo; the caller supplies the objective for the current state.

Timeline: a plan made at step ``t`` covers steps ``t .. t+H-1``. The controller executes its first
``replan_every = k`` actions, then replans. Replanning after ``n`` elapsed steps (``n = k``, or
more when :meth:`skip` reported missed steps) warm-starts from the previous plan shifted left by
``n`` with the freed tail filled (``tail="repeat"``: the plan's last action; ``"centre"``: the box
centre), and shifts every ``carry`` tensor along dim -2 the same way (its tail always repeats the
last entry, since carry tensors need not be actions, e.g. MPPI's std).
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from torch import Tensor

from .planners.base import Objective, Planner, PlanResult


def shift_time(x: Tensor, steps: int, fill: Tensor | None = None) -> Tensor:
    """Drop the first ``steps`` entries along dim -2 of ``x`` (``…×H×D``) and append ``steps``
    copies of ``fill`` (broadcast to ``…×D``; default: the last entry). ``steps >= H`` leaves
    only fill."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    horizon = x.shape[-2]
    steps = min(steps, horizon)
    if steps == 0:
        return x
    tail_value = x[..., -1:, :] if fill is None else fill.to(x).expand_as(x[..., -1:, :])
    tail = tail_value.expand(*x.shape[:-2], steps, x.shape[-1])
    return torch.cat([x[..., steps:, :], tail], dim=-2)


class Controller:
    """Receding-horizon wrapper around one planner.

    planner: any registered planner. generator: the planning randomness (its device is the
    planning device). replan_every: ``k`` in ``[1, H]``; plans every ``k`` steps and executes the
    first ``k`` actions of each plan. tail: how the shifted warm start's freed steps are filled,
    ``"repeat"`` (last planned action) or ``"centre"`` (box centre).
    """

    def __init__(
        self,
        planner: Planner,
        *,
        generator: torch.Generator,
        replan_every: int = 1,
        tail: Literal["repeat", "centre"] = "repeat",
    ) -> None:
        horizon = planner.config.horizon
        if not 1 <= replan_every <= horizon:
            raise ValueError(f"replan_every must be in [1, horizon={horizon}], got {replan_every}")
        if tail not in ("repeat", "centre"):
            raise ValueError(f"tail must be 'repeat' or 'centre', got {tail!r}")
        self.planner = planner
        self.generator = generator
        self.replan_every = replan_every
        self.tail = tail
        self.device = generator.device
        self._low, self._high = planner.bounds(self.device)
        self.reset()

    def reset(self) -> None:
        """Forget the plan, warm start, carry and timing (e.g. at an episode start)."""
        self.last_result: PlanResult | None = None
        self.plan_time_s: float | None = None
        self._plan: Tensor | None = None  # H×A, clamped
        self._elapsed = 0  # steps since self._plan was made

    # -- state ---------------------------------------------------------------------------------
    @property
    def warm_start(self) -> Tensor | None:
        """``H×A`` warm start the next plan would get: the last plan shifted by the elapsed steps,
        or ``None`` before the first plan (the planner then starts at the box centre)."""
        if self._plan is None:
            return None
        fill = (self._low + self._high) / 2 if self.tail == "centre" else None
        return shift_time(self._plan, self._elapsed, fill)

    @property
    def queue(self) -> Tensor:
        """``n×A`` actions still to execute before the next replan (``n = 0`` means the next
        :meth:`act` plans)."""
        if self._plan is None or self._elapsed >= self.replan_every:
            return self._low.new_zeros(0, self._low.shape[0])
        return self._plan[self._elapsed : self.replan_every]

    def carry(self) -> dict[str, Tensor]:
        """The last result's carry shifted by the elapsed steps (what the next plan gets)."""
        if self.last_result is None:
            return {}
        return {k: shift_time(v, self._elapsed) for k, v in self.last_result.carry.items()}

    # -- stepping ------------------------------------------------------------------------------
    def act(self, objective: Objective, prior: Tensor | None = None) -> Tensor:
        """The action ``A`` for the current step, within bounds. Plans first when the queue is
        empty (every ``replan_every`` steps); ``objective`` and ``prior`` are only used then."""
        if self._plan is None or self._elapsed >= self.replan_every:
            self.replan(objective, prior)
        assert self._plan is not None
        action = self._plan[self._elapsed].clone()  # the caller may write into it
        self._elapsed += 1
        return action

    def replan(self, objective: Objective, prior: Tensor | None = None) -> PlanResult:
        """Plan now from the shifted warm start and carry, regardless of the queue."""
        start = time.perf_counter()
        result = self.planner(
            objective,
            self.warm_start,
            generator=self.generator,
            prior=prior,
            carry=self.carry(),
        )
        # Clamping is cheap and guards the robot against a planner bug.
        plan = torch.minimum(torch.maximum(result.actions.detach(), self._low), self._high)
        if self.device.type != "cpu":
            # Asynchronous devices: wait for the plan so the timing is the plan's, not the launch's.
            torch.accelerator.synchronize(self.device)
        self.plan_time_s = time.perf_counter() - start
        self.last_result = result
        self._plan = plan
        self._elapsed = 0
        return result

    def skip(self, steps: int = 1) -> None:
        """Report ``steps`` control steps that elapsed without an action from :meth:`act` (e.g. a
        missed deadline): their queued actions are dropped and the next warm start shifts past
        them."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if self._plan is not None:
            self._elapsed += steps

"""The same synthetic dynamics planned with ``pytorch_mppi`` (the ``bench`` extra).

Fairness, as run by the benchmark:

* Same model, same kernels: pytorch_mppi's ``dynamics(state K×(S+1), action K×A, t)`` calls the
  model's own :meth:`~wm_planning.bench.models.SyntheticModel.step` (compiled in compile mode, as
  ours is). pytorch_mppi scores the state *after* a step, while TD-MPC2/PlaNet rewards depend on
  the transition, so the reward of step ``t`` rides along as an extra state column and
  ``running_cost`` reads it (``-γ^t r_t``). ``terminal_state_cost`` is ``-γ^H V(s_H)``.
* Same budget: ``num_samples`` (K, including the prior trajectories, injected through
  pytorch_mppi's ``SpecificActionSampler``), horizon, ``lambda_`` = our temperature, initial
  noise std, bounds, and the same number of iterations: pytorch_mppi does one MPPI update per
  ``command()``, so one plan is ``iterations`` calls with ``shift_nominal_trajectory=False``.
* The prior is computed once per plan, inside the timed region, for both.
* Randomness: pytorch_mppi samples from the global RNG on its device; the benchmark seeds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .cases import BenchCase
from .models import Noise, SyntheticModel

StepFn = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor]]
TerminalFn = Callable[[Tensor, Noise], Tensor]


def available() -> bool:
    try:
        import pytorch_mppi  # noqa: F401
    except ImportError:
        return False
    return True


class PytorchMPPIPlan:
    """One call = one plan of ``case.iterations`` pytorch_mppi updates from a zero nominal
    sequence; returns the nominal ``H×A`` sequence."""

    def __init__(
        self,
        model: SyntheticModel,
        case: BenchCase,
        device: torch.device,
        step_fn: StepFn | None = None,
        terminal_fn: TerminalFn | None = None,
    ) -> None:
        from pytorch_mppi.mppi import MPPI, SpecificActionSampler

        self.model, self.case, self.device = model, case, device
        self.step_fn: StepFn = model.step if step_fn is None else step_fn
        self.terminal_fn: TerminalFn = model.terminal_value if terminal_fn is None else terminal_fn
        self._noise: Noise = {}
        self._prior: Tensor | None = None
        s, gamma, horizon = model.state_dim, model.discount, case.horizon
        adapter = self

        class _Prior(SpecificActionSampler):  # type: ignore[misc]
            def sample_trajectories(self, state: Any, info: Any) -> Tensor:
                assert adapter._prior is not None
                return adapter._prior

        def dynamics(state: Tensor, action: Tensor, t: int) -> Tensor:
            steps = adapter._noise.get("step")
            nxt, reward = adapter.step_fn(state[:, :s], action, None if steps is None else steps[t])
            return torch.cat([nxt, reward.unsqueeze(1)], dim=1)

        def running_cost(state: Tensor, action: Tensor, t: int) -> Tensor:
            return -(gamma**t) * state[:, s]

        def terminal_cost(states: Tensor, actions: Tensor) -> Tensor:
            # states: 1×K×T×(S+1)
            return -(gamma**horizon) * adapter.terminal_fn(states[0, :, -1, :s], adapter._noise)

        sigma = torch.eye(case.action_dim, device=device) * case.init_std**2
        self.mppi = MPPI(
            dynamics,
            running_cost,
            s + 1,
            sigma,
            num_samples=case.num_samples,
            horizon=horizon,
            device=device,
            terminal_state_cost=terminal_cost,
            lambda_=case.temperature,
            u_min=torch.tensor(case.action_low, device=device),
            u_max=torch.tensor(case.action_high, device=device),
            step_dependent_dynamics=True,
            specific_action_sampler=_Prior() if case.num_prior else None,
        )
        self.state0 = torch.cat([model.initial_state(), model.initial_state().new_zeros(1)])

    def __call__(self, generator: torch.Generator, seed: int = 0) -> Tensor:
        case = self.case
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        self._prior = self.model.prior(case.num_prior, case.horizon, generator)
        self.mppi.U = torch.zeros(case.horizon, case.action_dim, device=self.device)
        for _ in range(case.iterations):
            self._noise = self.model.draw_noise(case.num_samples, case.horizon, generator)
            self.mppi.command(self.state0, shift_nominal_trajectory=False)
        return self.mppi.U

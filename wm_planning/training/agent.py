"""Closed-loop acting with a learned model: ``observe`` -> objective -> shared planner.

The planner comes from ``configs/planner/<name>.yaml`` (the model's ``default_planner`` unless
overridden) through :func:`wm_planning.planners.from_config`; the cost is the shared
:class:`~wm_planning.costs.RewardCost` with the model's discount and value weight; the receding
horizon lives in :class:`~wm_planning.control.Controller`. Models with a policy contribute
``num_prior`` trajectories as the planner's ``prior`` (TD-MPC2's ``num_pi_trajs``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wm_planning import costs, planners
from wm_planning.control import Controller
from wm_planning.data import Episode, EpisodeRecorder
from wm_planning.envs import Env
from wm_planning.models.registry import LatentState, LearnedModel


def make_planner(
    model: LearnedModel,
    action_low: tuple[float, ...],
    action_high: tuple[float, ...],
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> planners.Planner:
    """Planner from ``configs/planner/<name or model.default_planner>.yaml`` + ``options``."""
    from wm_planning.config import load_group

    cfg = load_group("planner", name or model.default_planner)
    cfg.update(dict(options or {}))
    return planners.from_config(cfg, action_low=action_low, action_high=action_high)


class Agent:
    """Plans with ``model`` at every step (the controller replans every ``replan_every``).

    explore_std: Gaussian noise (fraction of the half box) added to executed actions.
    """

    def __init__(
        self,
        model: LearnedModel,
        planner: planners.Planner,
        *,
        generator: torch.Generator,
        num_prior: int = 0,
        replan_every: int = 1,
        explore_std: float = 0.0,
    ) -> None:
        self.model, self.planner, self.generator = model, planner, generator
        self.cost = costs.RewardCost(**model.default_cost_options())
        self.controller = Controller(planner, generator=generator, replan_every=replan_every)
        self.num_prior, self.explore_std = num_prior, explore_std
        self.low, self.high = planner.bounds(torch.device("cpu"))
        self.reset()

    def reset(self) -> None:
        self.controller.reset()
        self.state: LatentState | None = None
        self.last_action: Tensor | None = None

    def act(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Action ``A`` for ``obs`` (the observation after the previous action)."""
        grad = self.planner.needs_gradients
        with torch.no_grad() if not grad else contextlib.nullcontext():
            with torch.no_grad():
                self.state = self.model.observe(self.state, self.last_action, obs)
            state = self.state
            prior = None
            if self.num_prior and self.controller.queue.shape[0] == 0:
                with torch.no_grad():
                    prior = self.model.policy_prior(
                        state, self.planner.config.horizon, self.num_prior, self.generator
                    )
            objective = costs.make_objective(self.model, state, self.cost)
            action = self.controller.act(objective, prior).cpu()
        if self.explore_std > 0:
            noise = torch.randn(
                action.shape, generator=self.generator, device=self.generator.device
            )
            action = action + self.explore_std * (self.high - self.low) / 2 * noise.cpu()
            action = torch.minimum(torch.maximum(action, self.low), self.high)
        self.last_action = action
        return action.numpy()


@dataclass
class EpisodeStats:
    ret: float
    success: bool
    length: int
    plan_times_s: list[float] = field(default_factory=list)
    episode: Episode | None = None


def run_episode(
    env: Env,
    seed: int,
    act: Any,
    *,
    agent: Agent | None = None,
    keep: bool = False,
    on_step: Any = None,
) -> EpisodeStats:
    """One episode: ``act(obs) -> action``; ``on_step()`` after each env step (training updates).
    ``keep`` returns the :class:`Episode` for a buffer."""
    obs = env.reset(seed=seed)
    rec = EpisodeRecorder(obs, keep_obs=keep)
    times: list[float] = []
    done = False
    while not done:
        before = agent.controller.last_result if agent is not None else None
        t0 = time.perf_counter()
        a = np.asarray(act(obs), dtype=np.float32)
        if agent is not None and agent.controller.last_result is not before:
            times.append(agent.controller.plan_time_s or time.perf_counter() - t0)
        obs, r, te, tr, info = env.step(a)
        done = rec.add(a, obs, r, te, tr, info)
        if on_step is not None:
            on_step()
    ep = rec.episode(seed) if keep else None
    return EpisodeStats(float(np.sum(rec.rewards)), rec.success[-1], len(rec), times, ep)

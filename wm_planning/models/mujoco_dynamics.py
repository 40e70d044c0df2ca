"""MuJoCo's own physics as a batched rollout model (the "exact dynamics" world model).

``MujocoDynamics(env)`` rolls ``B`` action sequences ``B×H×A`` out of one exact env state with
``mujoco.rollout`` (multi-threaded C++, persistent thread pool, one reusable ``MjData`` per
thread). Actions map to servo targets with the env's own :meth:`controls` and costs come from
the env's own batched task cost, so the planning cost equals the sum of the env's per-step costs
(``-reward``) to float precision.

Works with any env exposing the arm-env hooks (``controls``, ``features``, ``cost``,
``split_state``, ``n_substeps``), e.g. :class:`wm_planning.envs.arm.ArmEnv`. The model reads only
``env.model`` (mutated in place by domain randomization, so it follows along) and never touches
``env.data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout
from torch import Tensor

from .base import Rollout, WorldModel

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS.value


class MujocoDynamics(WorldModel):
    """Exact-dynamics model bound to one MuJoCo env.

    ``state`` is the env's :meth:`get_state` vector (1-D float64). :meth:`rollout` returns a
    :class:`Rollout` with ``rewards`` ``B×H`` (= -cost per step), ``latents`` ``B×H×S`` (physics
    state at each env-step boundary) and extras ``cost`` ``B×H``, ``distance`` ``B×H``,
    ``q_ref`` ``B×H×n`` and ``sensors`` ``B×H×nsensordata``.
    """

    provides = frozenset({"rewards", "latents"})

    def __init__(self, env: Any, nthread: int | None = None) -> None:
        for hook in ("controls", "features", "cost", "split_state", "get_state"):
            if not hasattr(env, hook):
                raise TypeError(
                    f"MujocoDynamics needs an env with {hook}(); got {type(env).__name__}"
                )
        self.env = env
        self.nthread = int(nthread if nthread is not None else min(os.cpu_count() or 1, 8))
        if self.nthread < 1:
            raise ValueError(f"nthread must be >= 1, got {self.nthread}")
        self._datas: list[mujoco.MjData] = []
        self._pool = mj_rollout.Rollout(nthread=self.nthread if self.nthread > 1 else 0)

    def close(self) -> None:
        self._pool.close()

    def _thread_data(self) -> list[mujoco.MjData]:
        # rebuilt if the env's model object changed (e.g. recompiled by randomization)
        if not self._datas or self._datas[0].model is not self.env.model:  # type: ignore[attr-defined]
            self._datas = [mujoco.MjData(self.env.model) for _ in range(max(self.nthread, 1))]
        return self._datas

    def encode(self, obs: Mapping[str, Any]) -> np.ndarray:
        """Exact dynamics needs the full simulator state: ``obs["sim_state"]`` if given, else the
        bound env's current :meth:`get_state`."""
        if "sim_state" in obs:
            return np.asarray(obs["sim_state"], dtype=np.float64)
        return np.asarray(self.env.get_state(), dtype=np.float64)

    def rollout(self, state: Any, actions: Tensor) -> Rollout:
        """Roll ``B×H×A`` actions out of ``state`` (shared by every sequence)."""
        if actions.dim() != 3 or actions.shape[-1] != self.env.spec.action_dim:
            raise ValueError(
                f"actions must be B×H×A with A={self.env.spec.action_dim}, got {tuple(actions.shape)}"
            )
        a = actions.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(a)):
            raise ValueError("actions contain NaN or inf")
        a = np.clip(a, self.env.spec.action_low, self.env.spec.action_high)
        b, h, _ = a.shape
        parts = self.env.split_state(np.asarray(state, dtype=np.float64))
        ctrl, q_refs = self.env.controls(
            np.broadcast_to(parts["q_ref"], (b, parts["q_ref"].size)), a
        )
        n = self.env.n_substeps
        # one extra physics step: rollout records sensordata computed at the *start* of each step,
        # so the sensors at boundary k (after k·n steps) sit at index k·n.
        ctrl = np.concatenate([ctrl, ctrl[:, -1:]], axis=1)
        model = self.env.model
        states, sensors = self._pool.rollout(
            model,
            self._thread_data(),
            parts["physics"][None],
            ctrl,
            initial_warmstart=parts["warmstart"][None],
        )
        idx = np.arange(1, h + 1) * n
        phys = states[:, idx - 1]  # B×H×nphys: state after k·n steps
        sens = sensors[:, idx]  # B×H×nsensordata
        f = self.env.features(
            phys.reshape(b * h, -1),
            sens.reshape(b * h, -1),
            q_refs.reshape(b * h, -1),
            a.reshape(b * h, -1),
            parts["target"][None],
        )
        cost, dist = self.env.cost(f)
        as_t = lambda x: torch.as_tensor(np.ascontiguousarray(x)).to(actions.device)  # noqa: E731
        cost_t = as_t(cost.reshape(b, h)).to(actions.dtype)
        return Rollout(
            latents=as_t(phys),
            rewards=-cost_t,
            extras={
                "cost": cost_t,
                "distance": as_t(dist.reshape(b, h)),
                "q_ref": as_t(q_refs),
                "sensors": as_t(sens),
            },
        )

    def objective(self, state: Any) -> Callable[[Tensor], Tensor]:
        """``B×H×A -> B`` summed per-step cost from ``state`` (for the planners)."""
        state = np.array(state, dtype=np.float64, copy=True)

        def objective(actions: Tensor) -> Tensor:
            return self.rollout(state, actions).extras["cost"].sum(dim=1)

        return objective

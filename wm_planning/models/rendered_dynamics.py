"""A visual world model with its predictor replaced by the simulator (``wm-plan goal oracle=true``).

``RenderedDynamics(visual, env)`` rolls ``B×H×A`` action sequences out on the env's exact MuJoCo
dynamics (:class:`~wm_planning.models.mujoco_dynamics.MujocoDynamics`), renders the state at the
end of every model step (``frameskip`` env steps) from the env's camera at the visual model's image
size, and scores it the way the visual model would: DINO-WM's encoder tokens and proprio
embedding, or the pixels themselves (visual foresight's goal-pixel cost). Its goal costs are
therefore the learned model's, and only the prediction is exact.

What it measures: planning with it instead of the learned model keeps the objective, the planner
and its budget and removes prediction error. Its success rate is the ceiling that objective can
reach, and the gap down to the learned model's is the predictor's.
Plan times are the simulator's and the renderer's, not a model's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .base import Rollout, WorldModel
from .mujoco_dynamics import MujocoDynamics


class RenderedDynamics(WorldModel):
    """Exact rollouts of ``env``, rendered and encoded by ``visual`` (a DINO-WM or visual-foresight
    model). ``state`` is the env's :meth:`get_state` vector; :meth:`encode` ignores the
    observation and reads the simulator. The env's own state is restored after every rollout."""

    def __init__(self, visual: Any, env: Any, nthread: int = 1) -> None:
        self.visual, self.env = visual, env
        self.exact = MujocoDynamics(env, nthread=nthread)
        self.config = visual.config
        self.obs_shape = visual.obs_shape
        self.image_size = (int(visual.obs_shape[0]), int(visual.obs_shape[1]))
        self.skip = int(getattr(visual.config, "frameskip", 1))
        self.tokens = hasattr(visual, "encode_images")  # DINO-WM: score the encoder's tokens
        self.provides = frozenset(
            {"frames", "latents", "proprio_latents"} if self.tokens else {"frames"}
        )

    def encode(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The simulator's current state (the observation is not needed: nothing is estimated)."""
        return np.array(self.env.get_state(), dtype=np.float64, copy=True)

    def _render(self, state: np.ndarray, phys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``K×nphys`` physics states -> images ``K×h×w×3`` uint8, proprio ``K×P``."""
        n = self.env.nphys
        full = np.array(state, dtype=np.float64, copy=True)
        images, proprio = [], []
        try:
            for p in phys:
                full[:n] = p
                self.env.set_state(full)
                images.append(self.env.render(None, self.image_size))
                proprio.append(self.env.observe()["proprio"])
        finally:
            self.env.set_state(state)
        return np.stack(images), np.stack(proprio)

    def rollout(self, state: Any, actions: Tensor) -> Rollout:
        """``B×H×A`` (``H`` a multiple of ``frameskip``) -> ``frames`` ``B×M×3×h×w`` and, for
        DINO-WM, ``latents`` ``B×M×(N·D)`` and ``proprio_latents`` ``B×M×Ep``, ``M = H/s``."""
        from .dino_wm import pixels_to_float

        b, h, _ = actions.shape
        if h % self.skip:
            raise ValueError(f"H={h} is not a multiple of the model's frameskip {self.skip}")
        state = np.asarray(state, dtype=np.float64)
        phys = self.exact.rollout(state, actions).get("latents")[:, self.skip - 1 :: self.skip]
        m = phys.shape[1]
        images, proprio = self._render(state, phys.reshape(b * m, -1).numpy())
        frames = pixels_to_float(torch.as_tensor(images))  # (B·M)×3×h×w
        out = Rollout(frames=frames.reshape(b, m, *frames.shape[1:]).to(actions.dtype))
        if self.tokens:
            with torch.no_grad():
                z = self.visual.encode_images(frames)
                pe = self.visual.embed_proprio(torch.as_tensor(proprio), (b * m,))
            out.latents = z.reshape(b, m, -1)
            out.extras["proprio_latents"] = pe.reshape(b, m, -1)
        return out

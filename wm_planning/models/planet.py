"""PlaNet's recurrent state-space model (Hafner et al., ICML 2019).

Shapes: batch ``B``, horizon ``H``, belief (GRU state) ``D`` = 200, stochastic state ``S`` = 30,
hidden ``Hd`` = 200, embedding ``E``, actions ``A``. The model state is ``[h, s]`` ``N×(D+S)``.

One prior step: ``x = relu(W_s s + W_a a)`` (split weight, no ``cat``), ``h' = GRU(x, h)``,
``(μ, σ) = MLP(h')`` with ``σ = softplus(·) + min_std``, ``s' = μ + σ ε``. The posterior reads
``h'`` and the observation embedding. Reward ``r = MLP([h', s'])``; its first Linear and the prior's
hidden Linear both read ``h'`` and run as one ``D×2Hd`` matmul (as in the benchmark's
``RSSMFused``). Observations: conv encoder/decoder for 64×64 pixels (PlaNet's), MLP for states.

``encode(obs)``: one filtering step from the zero initial state with a zero action on the latest
observation (exactly how training treats a window's first frame). Closed loop, :meth:`observe`
carries the belief over the episode (posterior after each executed action), which is what PlaNet
does; the training/eval loops use it. Imagination (``rollout``) samples ``s`` with
``state.generator`` if set, otherwise uses the prior mean (deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Rollout
from .registry import LatentState, LearnedModel, ModelSpec, register_model


@dataclass(frozen=True)
class PlaNetConfig:
    """Defaults follow PlaNet (and Kaixhin/PlaNet). ``kl_balance``: ``None`` for PlaNet's plain
    KL; ``α`` in (0, 1) for DreamerV2's balancing ``α KL(sg(q)‖p) + (1-α) KL(q‖sg(p))``.
    ``free_nats`` is applied to the KL summed over ``S`` at each step. ``frames``: decode
    predicted frames in ``rollout`` (pixel models only)."""

    obs: Literal["state", "pixels"] = "pixels"
    belief_dim: int = 200
    state_dim: int = 30
    hidden_dim: int = 200
    embed_dim: int = 1024  # state observations: MLP embedding width (pixels: fixed by the conv)
    min_std: float = 0.1
    free_nats: float = 3.0
    kl_scale: float = 1.0
    kl_balance: float | None = None
    reward_scale: float = 1.0
    frames: bool = False
    grad_clip_norm: float = 1000.0

    def __post_init__(self) -> None:
        for k in ("belief_dim", "state_dim", "hidden_dim", "embed_dim"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.obs not in ("state", "pixels"):
            raise ValueError(f"obs must be 'state' or 'pixels', got {self.obs!r}")
        if not self.min_std > 0 or self.free_nats < 0 or self.kl_scale < 0:
            raise ValueError("need min_std > 0, free_nats >= 0 and kl_scale >= 0")
        if self.kl_balance is not None and not 0 < self.kl_balance < 1:
            raise ValueError(f"kl_balance must be null or in (0, 1), got {self.kl_balance}")
        if self.frames and self.obs != "pixels":
            raise ValueError("frames=true needs a pixel model (obs: pixels)")


def _kl(mq: Tensor, sq: Tensor, mp: Tensor, sp: Tensor) -> Tensor:
    """KL(N(mq, sq) ‖ N(mp, sp)) summed over the last dim."""
    return (torch.log(sp / sq) + (sq.pow(2) + (mq - mp).pow(2)) / (2 * sp.pow(2)) - 0.5).sum(-1)


@register_model("planet")
class PlaNet(LearnedModel):
    """RSSM world model; see the module docstring."""

    Config = PlaNetConfig
    config: PlaNetConfig
    default_planner = "planet_cem"

    def __init__(self, config: PlaNetConfig, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        c = config
        d, s, hd, a = c.belief_dim, c.state_dim, c.hidden_dim, spec.action_dim
        self.discount = 1.0  # PlaNet sums rewards undiscounted
        self.action_dim = a
        self.provides = frozenset({"latents", "rewards"} | ({"frames"} if c.frames else set()))
        self.embed_s = nn.Linear(s, d)
        self.embed_a = nn.Linear(a, d, bias=False)
        self.gru = nn.GRUCell(d, d)
        self.from_h = nn.Linear(d, 2 * hd)  # prior hidden | reward first layer (h part)
        self.prior_out = nn.Linear(hd, 2 * s)
        self.rew_s = nn.Linear(s, hd, bias=False)  # reward first layer (s part)
        self.rew = nn.Sequential(nn.ReLU(), nn.Linear(hd, hd), nn.ReLU(), nn.Linear(hd, 1))
        if self.pixels:
            if self.obs_shape[:2] != (64, 64):
                raise ValueError(f"PlaNet's conv encoder needs 64×64 pixels, got {self.obs_shape}")
            self.encoder: nn.Module = nn.Sequential(
                nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),
                nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(), nn.Flatten(),
            )  # fmt: skip
            emb = 1024
            self.decoder: nn.Module = nn.Sequential(
                nn.Linear(d + s, 1024), nn.Unflatten(1, (1024, 1, 1)),
                nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),
                nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),
                nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),
                nn.ConvTranspose2d(32, 3, 6, stride=2),
            )  # fmt: skip
        else:
            n_obs, emb = self.obs_shape[0], c.embed_dim
            self.encoder = nn.Sequential(
                nn.Linear(n_obs, hd), nn.ELU(), nn.Linear(hd, hd), nn.ELU(), nn.Linear(hd, emb)
            )
            self.decoder = nn.Sequential(
                nn.Linear(d + s, hd), nn.ELU(), nn.Linear(hd, hd), nn.ELU(), nn.Linear(hd, n_obs)
            )
        self.post_h = nn.Linear(d, hd)
        self.post_e = nn.Linear(emb, hd, bias=False)
        self.post_out = nn.Linear(hd, 2 * s)

    # -- RSSM ----------------------------------------------------------------------------------
    def _split(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        return latent.split([self.config.belief_dim, self.config.state_dim], dim=-1)

    def _gauss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = x.chunk(2, dim=-1)
        return mean, F.softplus(std) + self.config.min_std

    def _transition(self, s: Tensor, a: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """``h' = GRU(relu(W_s s + W_a a), h)`` and the joint hidden pre-activation ``N×2Hd``."""
        h = self.gru(F.relu(self.embed_s(s) + self.embed_a(a)), h)
        return h, self.from_h(h)

    def _prior(self, both: Tensor) -> tuple[Tensor, Tensor]:
        return self._gauss(self.prior_out(F.relu(both[..., : self.config.hidden_dim])))

    def _reward(self, both: Tensor, s: Tensor) -> Tensor:
        return self.rew(both[..., self.config.hidden_dim :] + self.rew_s(s)).squeeze(-1)

    def _posterior(self, h: Tensor, emb: Tensor) -> tuple[Tensor, Tensor]:
        return self._gauss(self.post_out(F.relu(self.post_h(h) + self.post_e(emb))))

    def initial(self, n: int) -> Tensor:
        """Zero initial state ``n×(D+S)``."""
        return torch.zeros(n, self.config.belief_dim + self.config.state_dim, device=self.device)

    def _filter(
        self, latent: Tensor, action: Tensor, emb: Tensor, sample: bool
    ) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One posterior step -> (new latent ``N×(D+S)``, (prior mean, prior std, post mean,
        post std))."""
        h, s = self._split(latent)
        h, both = self._transition(s, action, h)
        pm, ps = self._prior(both)
        qm, qs = self._posterior(h, emb)
        s = qm + qs * torch.randn_like(qs) if sample else qm
        return torch.cat([h, s], -1), (pm, ps, qm, qs)

    # -- WorldModel seam -----------------------------------------------------------------------
    def encode(self, obs: Mapping[str, Any]) -> LatentState:
        """Latest observation -> posterior mean after one step from the zero state with a zero
        action (``N×(D+S)``)."""
        return self.observe(None, None, obs)

    def observe(
        self, state: LatentState | None, action: Tensor | None, obs: Mapping[str, Any]
    ) -> LatentState:
        """Posterior (mean) after executing ``action`` ``A`` (or ``N×A``) from ``state`` and seeing
        ``obs``; ``state=None`` starts from the zero state with a zero action."""
        emb = self.encoder(self.obs_tensor(obs))
        n = emb.shape[0]
        latent = self.initial(n) if state is None else state.latent.expand(n, -1)
        a = (
            torch.zeros(n, self.action_dim, device=self.device)
            if action is None
            else torch.as_tensor(action, dtype=torch.float32, device=self.device)
            .reshape(-1, self.action_dim)
            .expand(n, -1)
        )
        latent, _ = self._filter(latent, a, emb, sample=False)
        return LatentState(latent)

    def rollout(self, state: LatentState, actions: Tensor, frames: bool | None = None) -> Rollout:
        """Prior imagination of ``B×H×A`` from the shared ``1×(D+S)`` state -> latents
        ``B×H×(D+S)``, rewards ``B×H`` and, if ``frames`` (default: config), frames
        ``B×H×3×64×64`` in [0, 1]."""
        b, horizon, _ = actions.shape
        actions = actions.to(self.device)
        h, s = self._split(state.latent.expand(b, -1))
        g = state.generator
        lats, rews = [], []
        for t in range(horizon):
            h, both = self._transition(s, actions[:, t], h)
            mean, std = self._prior(both)
            if g is None:
                s = mean
            else:
                eps = torch.randn(mean.shape, generator=g, device=g.device).to(mean.device)
                s = mean + std * eps
            rews.append(self._reward(both, s))
            lats.append(torch.cat([h, s], -1))
        latents = torch.stack(lats, 1)
        out = Rollout(latents=latents, rewards=torch.stack(rews, 1))
        if self.config.frames if frames is None else frames:
            if not self.pixels:
                raise ValueError("frames need a pixel model")
            img = self.decoder(latents.flatten(0, 1)) + 0.5
            out.frames = img.clamp(0, 1).unflatten(0, (b, horizon))
        return out

    # -- training ------------------------------------------------------------------------------
    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Negative ELBO on windows: ``obs`` ``B×(L+1)×…`` filtered from the zero state (the
        first frame with a zero action, then ``action`` ``B×L×A``), reconstruction (squared error
        summed over the observation, mean over batch and time), reward MSE (``reward`` ``B×L``,
        predicted from the state after each action) and KL with free nats."""
        c = self.config
        obs = batch[f"obs.{self.obs_key}"]
        act = batch["action"].to(self.device, torch.float32)
        rew = batch["reward"].to(self.device, torch.float32)
        bsz, length = act.shape[:2]
        x = self.preprocess(obs.flatten(0, 1))  # B(L+1)×…
        emb = self.encoder(x).unflatten(0, (bsz, length + 1))
        acts = torch.cat([act.new_zeros(bsz, 1, self.action_dim), act], 1)  # B×(L+1)×A
        latent = self.initial(bsz)
        lats, stats, rew_pred = [], [], []
        for t in range(length + 1):
            latent, st = self._filter(latent, acts[:, t], emb[:, t], sample=True)
            lats.append(latent)
            stats.append(st)
            if t > 0:
                h, s = self._split(latent)
                rew_pred.append(self._reward(self.from_h(h), s))
        latents = torch.stack(lats, 1)  # B×(L+1)×(D+S)
        pm, ps, qm, qs = (torch.stack(v, 1) for v in zip(*stats, strict=True))
        recon = self.decoder(latents.flatten(0, 1))
        recon_loss = (recon - x).pow(2).flatten(1).sum(1).mean()
        reward_loss = (torch.stack(rew_pred, 1) - rew).pow(2).mean()
        if c.kl_balance is None:
            kl = _kl(qm, qs, pm, ps).clamp_min(c.free_nats).mean()
        else:
            lhs = _kl(qm.detach(), qs.detach(), pm, ps).clamp_min(c.free_nats).mean()
            rhs = _kl(qm, qs, pm.detach(), ps.detach()).clamp_min(c.free_nats).mean()
            kl = c.kl_balance * lhs + (1 - c.kl_balance) * rhs
        loss = recon_loss + c.reward_scale * reward_loss + c.kl_scale * kl
        metrics = {
            "recon_loss": float(recon_loss.detach()),
            "reward_loss": float(reward_loss.detach()),
            "kl": float(_kl(qm, qs, pm, ps).mean().detach()),
        }
        return loss, metrics

    def optim_groups(self, lr: float) -> list[dict[str, Any]]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "clip": self.config.grad_clip_norm, "name": "model"}]

    def default_cost_options(self) -> dict[str, Any]:
        return {"discount": 1.0, "value_weight": 0.0}

"""TD-MPC2 (Hansen, Su & Wang, ICLR 2024): an implicit, decoder-free world model.

Shapes: batch ``B``, horizon ``H``, latent ``L``, hidden ``M``, actions ``A``, value/reward bins
``K`` (101), Q heads ``E`` (5; 2 for the 1M size).

Architecture (tdmpc2 ``common/world_model.py``/``layers.py``): encoder (MLP for state, conv for
64×64 pixels) ending in SimNorm; dynamics ``[z, a] -> z'`` (SimNorm); reward ``[z, a] -> K`` logits
(two-hot over symlog bins); ``E`` Q heads ``[z, a] -> K`` with dropout 0.01 after their first
Linear and an EMA target copy (tau 0.01); a squashed-Gaussian policy ``z -> a``. Hidden layers
are ``NormedLinear`` = Linear -> LayerNorm -> Mish.

Efficiency (same tricks as :class:`wm_planning.bench.models.TDMPC2Fused`): every first layer that
reads ``[z, a]`` is split into a ``z`` and an ``a`` weight (no ``cat``); dynamics and reward share
one ``L×2M`` matmul on ``z``; all Q heads' first layers are one ``L×EM`` matmul; the two-hot
expectation is ``exp(x - max) @ [bins, 1]``; Mish uses one ``exp``.

Planning value (``Rollout.terminal_value``): ``Q(z_H, π(z_H))``. With ``state.generator`` set it
follows tdmpc2's ``_estimate_value``: a sampled policy action and the average of two random heads
(only those two are evaluated). Without a generator (the default from :meth:`encode`) it is
deterministic: the policy's mean action and the average over all heads (less variance, ``E/2``×
the terminal Q cost), so a plan depends only on the planner's generator.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Rollout
from .registry import LatentState, LearnedModel, ModelSpec, register_model


# -- maths (tdmpc2 common/math.py) ---------------------------------------------------------------
def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


def two_hot(x: Tensor, num_bins: int, vmin: float, vmax: float) -> Tensor:
    """Scalars ``…`` -> soft two-hot ``…×K`` over ``K`` bins evenly spaced in symlog space."""
    bin_size = (vmax - vmin) / (num_bins - 1)
    x = symlog(x).clamp(vmin, vmax)
    pos = (x - vmin) / bin_size
    idx = pos.floor().clamp(max=num_bins - 1)
    frac = (pos - idx).unsqueeze(-1)
    idx = idx.long().unsqueeze(-1)
    out = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    out.scatter_(-1, idx, 1 - frac)
    # at the top bin frac is 0, so adding it to the (clamped) same index is harmless
    out.scatter_add_(-1, (idx + 1).clamp(max=num_bins - 1), frac)
    return out


def two_hot_inv(logits: Tensor, bins1: Tensor) -> Tensor:
    """Logits ``…×K`` -> scalar ``…``: ``symexp(softmax(logits) · bins)``. ``bins1`` is ``K×2``
    (bins, ones): one small matmul gives numerator and normaliser."""
    e = torch.exp(logits - logits.amax(-1, keepdim=True))
    nd = e @ bins1
    return symexp(nd[..., 0] / nd[..., 1])


def soft_ce(logits: Tensor, target: Tensor, num_bins: int, vmin: float, vmax: float) -> Tensor:
    """Cross-entropy ``…`` of logits ``…×K`` against the two-hot encoding of scalars ``…``."""
    return -(two_hot(target, num_bins, vmin, vmax) * F.log_softmax(logits, -1)).sum(-1)


def mish(x: Tensor) -> Tensor:
    """Mish = x·tanh(softplus(x)) with one exp: tanh(log(1+e)) = n/(n+2), n = e(e+2). Clamping at
    20 only affects x where the ratio already rounds to 1 in fp32."""
    e = torch.exp(x.clamp(max=20.0))
    n = e * (e + 2)
    return x * n / (n + 2)


def simnorm(x: Tensor, group: int) -> Tensor:
    """Softmax over consecutive groups of ``group`` features (each group sums to 1)."""
    shape = x.shape
    return F.softmax(x.reshape(*shape[:-1], -1, group), dim=-1).reshape(shape)


class RunningScale(nn.Module):
    """tdmpc2's running return scale: EMA (rate ``tau``) of the 5–95 percentile range of Q, used to
    divide Q in the policy loss (at least 1)."""

    value: Tensor
    initialised: Tensor

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        q = torch.quantile(
            x.detach().float().flatten(), torch.tensor([0.05, 0.95], device=x.device)
        )
        span = q[1] - q[0]
        # branch-free (no host sync, no torch.compile graph break): the first update sets it
        self.value.copy_(torch.where(self.initialised, self.value.lerp(span, self.tau), span))
        self.initialised.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        return x / self.value.clamp_min(1.0)


# -- config --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TDMPC2Config:
    """Defaults are tdmpc2's ``config.yaml`` with the 5M ``MODEL_SIZE``.

    discount: ``None`` derives it from the episode length as tdmpc2 does
    (``(T/5 - 1)/(T/5)`` clipped to ``[0.95, 0.995]``).
    """

    obs: Literal["state", "pixels"] = "state"
    latent_dim: int = 512
    mlp_dim: int = 512
    enc_dim: int = 256
    num_enc_layers: int = 2
    num_channels: int = 32
    num_q: int = 5
    dropout: float = 0.01
    simnorm_dim: int = 8
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    discount: float | None = None
    discount_denom: float = 5.0
    discount_min: float = 0.95
    discount_max: float = 0.995
    rho: float = 0.5
    tau: float = 0.01
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    entropy_coef: float = 1e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0

    def __post_init__(self) -> None:
        for k in ("latent_dim", "mlp_dim", "enc_dim", "num_channels", "num_bins"):
            if getattr(self, k) < 1:
                raise ValueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.obs not in ("state", "pixels"):
            raise ValueError(f"obs must be 'state' or 'pixels', got {self.obs!r}")
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(
                f"latent_dim {self.latent_dim} must be a multiple of simnorm_dim {self.simnorm_dim}"
            )
        if self.num_q < 2:
            raise ValueError(f"num_q must be >= 2 (TD targets use two heads), got {self.num_q}")
        if self.num_enc_layers < 1 or self.num_bins < 2 or not self.vmin < self.vmax:
            raise ValueError("need num_enc_layers >= 1, num_bins >= 2 and vmin < vmax")
        if not (0 <= self.dropout < 1 and 0 < self.rho <= 1 and 0 < self.tau <= 1):
            raise ValueError("need 0 <= dropout < 1, 0 < rho <= 1 and 0 < tau <= 1")
        if self.discount is not None and not 0 < self.discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min must be < log_std_max")


# -- networks ------------------------------------------------------------------------------------
class NormedLinear(nn.Module):
    """Linear -> (dropout) -> LayerNorm -> Mish."""

    def __init__(self, n_in: int, n_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.ln = nn.LayerNorm(n_out)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = self.linear(x)
        if self.dropout:
            x = F.dropout(x, self.dropout, self.training)
        return mish(self.ln(x))


class QEnsemble(nn.Module):
    """``E`` Q heads with stacked weights. Layer 0 of all heads is one matmul on ``z`` (``L×EM``)
    plus one on ``a``; layers 1–2 are batched matmuls over heads."""

    def __init__(self, cfg: TDMPC2Config, action_dim: int) -> None:
        super().__init__()
        e, lat, m, k = cfg.num_q, cfg.latent_dim, cfg.mlp_dim, cfg.num_bins
        self.num, self.m, self.dropout = e, m, cfg.dropout
        self.wz = nn.Parameter(torch.empty(lat, e, m))
        self.wa = nn.Parameter(torch.empty(action_dim, e, m))
        self.b0 = nn.Parameter(torch.zeros(e, m))
        self.g0 = nn.Parameter(torch.ones(e, m))
        self.beta0 = nn.Parameter(torch.zeros(e, m))
        self.w1 = nn.Parameter(torch.empty(e, m, m))
        self.b1 = nn.Parameter(torch.zeros(e, 1, m))
        self.g1 = nn.Parameter(torch.ones(e, 1, m))
        self.beta1 = nn.Parameter(torch.zeros(e, 1, m))
        self.w2 = nn.Parameter(torch.zeros(e, m, k))  # zero-init: Q starts at 0 (tdmpc2)
        self.b2 = nn.Parameter(torch.zeros(e, 1, k))
        for w in (self.wz, self.wa, self.w1):
            nn.init.trunc_normal_(w, std=0.02)

    def forward(
        self, z: Tensor, a: Tensor, heads: Tensor | None = None, detach: bool = False
    ) -> Tensor:
        """Logits ``E'×N×K`` for latents ``N×L`` and actions ``N×A``; ``heads`` picks ``E'`` heads
        (default all); ``detach`` uses the weights without gradient (tdmpc2's policy loss)."""
        p = {n: (t.detach() if detach else t) for n, t in self.named_parameters()}
        if heads is not None:
            p = {n: t.index_select(0 if n not in ("wz", "wa") else 1, heads) for n, t in p.items()}
        e = p["b0"].shape[0]
        n = z.shape[0]
        h = z @ p["wz"].reshape(z.shape[-1], e * self.m) + a @ p["wa"].reshape(a.shape[-1], -1)
        h = h.view(n, e, self.m) + p["b0"]
        if self.dropout:
            h = F.dropout(h, self.dropout, self.training)
        h = mish(F.layer_norm(h, (self.m,)) * p["g0"] + p["beta0"]).transpose(0, 1)  # E×N×M
        h = torch.baddbmm(p["b1"], h, p["w1"])
        h = mish(F.layer_norm(h, (self.m,)) * p["g1"] + p["beta1"])
        return torch.baddbmm(p["b2"], h, p["w2"])


@register_model("tdmpc2")
class TDMPC2(LearnedModel):
    """TD-MPC2 world model (see the module docstring). ``encode`` maps the latest observation to
    ``LatentState(latent 1×L)``; TD-MPC2 has no recurrent state."""

    Config = TDMPC2Config
    config: TDMPC2Config
    default_planner = "tdmpc2_mppi"
    provides = frozenset({"latents", "rewards", "terminal_value"})
    bins1: Tensor

    def __init__(self, config: TDMPC2Config, spec: ModelSpec) -> None:
        super().__init__(config, spec)
        c = config
        lat, m, a, k = c.latent_dim, c.mlp_dim, spec.action_dim, c.num_bins
        self.action_dim = a
        if c.discount is not None:
            self.discount = c.discount
        else:
            frac = spec.episode_length / c.discount_denom
            self.discount = min(max((frac - 1) / frac, c.discount_min), c.discount_max)
        self.encoder = self._build_encoder()
        # dynamics | reward first layer, split into z and a parts
        self.step_z = nn.Linear(lat, 2 * m)
        self.step_a = nn.Linear(a, 2 * m, bias=False)
        self.step_ln = nn.ModuleList([nn.LayerNorm(m), nn.LayerNorm(m)])
        self.dyn = nn.Sequential(NormedLinear(m, m), nn.Linear(m, lat), nn.LayerNorm(lat))
        self.rew = nn.Sequential(NormedLinear(m, m), nn.Linear(m, k))
        self.pi = nn.Sequential(NormedLinear(lat, m), NormedLinear(m, m), nn.Linear(m, 2 * a))
        self.q = QEnsemble(c, a)
        self.apply(_init_linear)
        rew_out = self.rew[1]
        assert isinstance(rew_out, nn.Linear)
        nn.init.zeros_(rew_out.weight)  # reward starts at 0 (tdmpc2)
        self.q_target = QEnsemble(c, a)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.scale = RunningScale(c.tau)
        bins = torch.linspace(c.vmin, c.vmax, k)
        self.register_buffer("bins1", torch.stack([bins, torch.ones_like(bins)], 1))

    def _build_encoder(self) -> nn.Module:
        c = self.config
        if not self.pixels:
            dims = [self.obs_shape[0]] + [c.enc_dim] * max(c.num_enc_layers - 1, 1)
            layers: list[nn.Module] = [NormedLinear(i, o) for i, o in itertools.pairwise(dims)]
            layers += [nn.Linear(dims[-1], c.latent_dim), nn.LayerNorm(c.latent_dim)]
            return nn.Sequential(*layers)
        nc = c.num_channels
        conv = nn.Sequential(
            nn.Conv2d(3, nc, 7, stride=2), nn.ReLU(),
            nn.Conv2d(nc, nc, 5, stride=2), nn.ReLU(),
            nn.Conv2d(nc, nc, 3, stride=2), nn.ReLU(),
            nn.Conv2d(nc, nc, 3, stride=1), nn.Flatten(),
        )  # fmt: skip
        h, w = self.obs_shape[:2]
        with torch.no_grad():
            n_out = conv(torch.zeros(1, 3, h, w)).shape[1]
        # tdmpc2 applies SimNorm straight to the flattened conv output (512 = latent_dim at 64×64);
        # other latent sizes get a projection.
        if n_out == c.latent_dim:
            return conv
        return nn.Sequential(conv, nn.Linear(n_out, c.latent_dim), nn.LayerNorm(c.latent_dim))

    # -- building blocks -----------------------------------------------------------------------
    def _simnorm(self, x: Tensor) -> Tensor:
        return simnorm(x, self.config.simnorm_dim)

    def _shift_aug(self, x: Tensor, pad: int = 4) -> Tensor:
        """tdmpc2's random-shift augmentation for pixel batches ``N×3×H×W`` (training only)."""
        n, _, h, _w = x.shape
        x = F.pad(x, (pad,) * 4, mode="replicate")
        eps = 1.0 / (h + 2 * pad)
        ar = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, device=x.device)[:h]
        ar = ar.unsqueeze(0).repeat(h, 1).unsqueeze(2)
        base = torch.cat([ar, ar.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
        shift = torch.randint(0, 2 * pad + 1, (n, 1, 1, 2), device=x.device).float() * (
            2.0 / (h + 2 * pad)
        )
        return F.grid_sample(x, base + shift, padding_mode="zeros", align_corners=False)

    def encode_tensor(self, x: Tensor) -> Tensor:
        """Preprocessed observations ``N×…`` -> latents ``N×L``."""
        if self.pixels and self.training:
            x = self._shift_aug(x)
        return self._simnorm(self.encoder(x))

    def step(self, z: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        """One transition: ``z`` ``N×L`` (or ``1×L``, broadcast), ``a`` ``N×A`` -> (next latent
        ``N×L``, reward logits ``N×K``)."""
        m = self.config.mlp_dim
        h = self.step_z(z) + self.step_a(a)  # N×2M: dynamics | reward
        hd, hr = h.split(m, dim=-1)
        hd, hr = mish(self.step_ln[0](hd)), mish(self.step_ln[1](hr))
        return self._simnorm(self.dyn(hd)), self.rew(hr)

    def next(self, z: Tensor, a: Tensor) -> Tensor:
        """Next latent only (the reward branch is skipped)."""
        m = self.config.mlp_dim
        hd = F.linear(z, self.step_z.weight[:m], self.step_z.bias[:m])
        hd = hd + F.linear(a, self.step_a.weight[:m])
        return self._simnorm(self.dyn(mish(self.step_ln[0](hd))))

    def policy(self, z: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Squashed Gaussian policy: latents ``N×L`` and noise ``N×A`` (``None``: mean action) ->
        (action ``N×A``, entropy ``N``, entropy scaled by ``A`` as tdmpc2 does)."""
        c = self.config
        mu, log_std = self.pi(z).chunk(2, dim=-1)
        log_std = c.log_std_min + 0.5 * (c.log_std_max - c.log_std_min) * (torch.tanh(log_std) + 1)
        if eps is None:
            eps = torch.zeros_like(mu)
        pre = mu + eps * log_std.exp()
        log_prob = (-0.5 * eps.pow(2) - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * mu.shape[
            -1
        ]
        action = torch.tanh(pre)
        log_prob = log_prob - torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1)
        entropy = -log_prob
        return action, entropy, entropy * mu.shape[-1]

    def q_value(
        self,
        z: Tensor,
        a: Tensor,
        generator: torch.Generator | None = None,
        target: bool = False,
        reduce: Literal["avg", "min"] = "avg",
        detach: bool = False,
    ) -> Tensor:
        """Scalar Q ``N``: average (or min) of two random heads drawn from ``generator`` (or the
        global RNG when ``generator`` is ``None`` and ``reduce='min'``); average of all heads when
        ``generator`` is ``None`` and ``reduce='avg'``."""  # fmt: skip
        net = self.q_target if target else self.q
        if generator is None and reduce == "avg":
            heads = None
        else:
            heads = torch.randperm(
                self.config.num_q, generator=generator, device=_gen_device(generator, z)
            )
            heads = heads[:2].to(z.device)
        q = two_hot_inv(net(z, a, heads, detach=detach), self.bins1)  # E'×N
        return q.min(0).values if reduce == "min" else q.mean(0)

    # -- WorldModel seam -----------------------------------------------------------------------
    def encode(self, obs: Mapping[str, Any]) -> LatentState:
        """Latest observation (``S`` or ``N×S``; pixels ``H×W×3`` uint8) -> ``LatentState(N×L)``."""
        return LatentState(self.encode_tensor(self.obs_tensor(obs)))

    def rollout(self, state: LatentState, actions: Tensor) -> Rollout:
        """``B×H×A`` from the shared latent ``1×L`` -> latents ``B×H×L``, rewards ``B×H``,
        terminal_value ``B`` (see the module docstring)."""
        b, h, _ = actions.shape
        actions = actions.to(self.device)
        # The shared 1×L start latent broadcasts in the first step, so its part of the first
        # layer is computed once rather than once per sequence.
        z = state.latent
        lats, logits = [], []
        for t in range(h):
            z, r = self.step(z, actions[:, t])
            lats.append(z)
            logits.append(r)
        rewards = two_hot_inv(torch.stack(logits, 1), self.bins1)
        g = state.generator
        if g is None:
            a, _, _ = self.policy(z)
        else:
            eps = torch.randn(b, self.action_dim, generator=g, device=g.device).to(z.device)
            a, _, _ = self.policy(z, eps)
        value = self.q_value(z, a, g)
        return Rollout(latents=torch.stack(lats, 1), rewards=rewards, terminal_value=value)

    def value(self, state: LatentState) -> Tensor:
        """``N`` values ``Q(z, π_mean(z))`` averaged over all heads."""
        a, _, _ = self.policy(state.latent)
        return self.q_value(state.latent, a)

    def policy_prior(
        self, state: LatentState, horizon: int, num: int, generator: torch.Generator
    ) -> Tensor:
        """tdmpc2 ``_plan``'s ``num_pi_trajs``: sample the policy ``num`` times and roll it through
        the dynamics from the shared latent -> ``P×H×A``."""
        z = state.latent.expand(num, -1)
        acts = []
        for t in range(horizon):
            eps = torch.randn(num, self.action_dim, generator=generator, device=generator.device)
            acts.append(self.policy(z, eps.to(z.device))[0])
            if t < horizon - 1:
                z = self.next(z, acts[-1])
        return torch.stack(acts, 1)

    def default_cost_options(self) -> dict[str, Any]:
        return {"discount": self.discount, "value_weight": 1.0}

    # -- training ------------------------------------------------------------------------------
    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """tdmpc2 ``update`` as one scalar: model loss (consistency, reward CE, value CE against
        target-Q TD targets, rho-discounted over the ``H`` = window length steps) + policy loss
        (computed on detached latents with gradient-free Q weights, so it only trains the policy).

        batch: ``obs.<key>`` ``B×(H+1)×…``, ``action`` ``B×H×A``, ``reward`` ``B×H``,
        optional ``terminated`` ``B×H``.
        """
        c = self.config
        obs = batch[f"obs.{self.obs_key}"]
        act = batch["action"].to(self.device, torch.float32)
        rew = batch["reward"].to(self.device, torch.float32)
        bsz, horizon = act.shape[:2]
        x = self.preprocess(obs.flatten(0, 1))
        with torch.no_grad():
            next_z = self.encode_tensor(x.unflatten(0, (bsz, horizon + 1))[:, 1:].flatten(0, 1))
            pi_next, _, _ = self.policy(
                next_z, torch.randn(next_z.shape[0], self.action_dim, device=self.device)
            )
            q_next = self.q_value(next_z, pi_next, target=True, reduce="min").view(bsz, horizon)
            alive = (
                1.0 - batch["terminated"].to(self.device, torch.float32)
                if "terminated" in batch
                else 1.0
            )
            td = rew + self.discount * alive * q_next
            next_z = next_z.view(bsz, horizon, -1)
        z = self.encode_tensor(x.view(bsz, horizon + 1, *x.shape[1:])[:, 0])
        zs, rlogits = [z], []
        rho = c.rho ** torch.arange(horizon + 1, device=self.device, dtype=torch.float32)
        consistency = z.new_zeros(())
        for t in range(horizon):
            z, r = self.step(z, act[:, t])
            consistency = consistency + rho[t] * (z - next_z[:, t]).pow(2).mean()
            zs.append(z)
            rlogits.append(r)
        z_in = torch.stack(zs[:-1], 1)  # B×H×L
        qs = self.q(z_in.flatten(0, 1), act.flatten(0, 1)).view(c.num_q, bsz, horizon, -1)
        reward_ce = soft_ce(torch.stack(rlogits, 1), rew, c.num_bins, c.vmin, c.vmax)  # B×H
        value_ce = soft_ce(qs, td.expand(c.num_q, -1, -1), c.num_bins, c.vmin, c.vmax)  # E×B×H
        reward_loss = (reward_ce.mean(0) * rho[:horizon]).sum() / horizon
        value_loss = (value_ce.mean(1) * rho[:horizon]).sum() / (horizon * c.num_q)
        consistency = consistency / horizon
        model_loss = (
            c.consistency_coef * consistency
            + c.reward_coef * reward_loss
            + c.value_coef * value_loss
        )
        # policy: maximise scaled Q + entropy on detached latents; Q weights detached
        z_all = torch.stack(zs, 1).detach().flatten(0, 1)
        a_pi, _, scaled_ent = self.policy(
            z_all, torch.randn(z_all.shape[0], self.action_dim, device=self.device)
        )
        q_pi = self.q_value(z_all, a_pi, generator=None, reduce="avg", detach=True).view(
            bsz, horizon + 1
        )
        if self.training:
            self.scale.update(q_pi[:, 0])
        q_pi = self.scale(q_pi)
        pi_loss = (
            -(c.entropy_coef * scaled_ent.view(bsz, horizon + 1) + q_pi).mean(0) * rho
        ).mean()
        terms = torch.stack([consistency, reward_loss, value_loss, pi_loss, self.scale.value,
                             model_loss]).detach()  # fmt: skip
        # one host transfer for all metrics, after the loss (a torch.compile graph ends here)
        names = ("consistency", "reward_loss", "value_loss", "pi_loss", "pi_scale", "model_loss")
        metrics = dict(zip(names, terms.tolist(), strict=True))
        return model_loss + pi_loss, metrics

    def optim_groups(self, lr: float) -> list[dict[str, Any]]:
        """tdmpc2: encoder at ``enc_lr_scale × lr``; policy its own group (Adam eps 1e-5 in
        tdmpc2; one Adam here, eps from the trainer); both clipped at ``grad_clip_norm``."""
        c = self.config
        enc = list(self.encoder.parameters())
        pi = list(self.pi.parameters())
        skip = {id(p) for p in enc + pi}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in skip]
        return [
            {"params": enc, "lr": lr * c.enc_lr_scale, "clip": c.grad_clip_norm, "name": "encoder"},
            {"params": rest, "lr": lr, "clip": c.grad_clip_norm, "name": "model"},
            {"params": pi, "lr": lr, "clip": c.grad_clip_norm, "name": "pi"},
        ]

    @torch.no_grad()
    def after_update(self) -> None:
        """EMA of the target Q heads (rate ``tau``)."""
        for p, tp in zip(self.q.parameters(), self.q_target.parameters(), strict=True):
            tp.lerp_(p, self.config.tau)


def _init_linear(m: nn.Module) -> None:
    # tdmpc2 weight_init: truncated normal (std 0.02) weights, zero biases
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def _gen_device(generator: torch.Generator | None, like: Tensor) -> torch.device:
    return generator.device if generator is not None else like.device

"""Synthetic world models for benchmarking: the real architectures at real sizes with seeded random
weights, exposed as planning objectives ``actions B×H×A -> cost B``.

Two TD-MPC2 implementations compute the same function from the same weights:

* :class:`TDMPC2Reference` follows tdmpc2's own code (``common/layers.py``, ``world_model.py``,
  ``tdmpc2.py::_estimate_value``): ``cat([z, a])``, ``NormedLinear`` = Linear → LayerNorm → Mish,
  SimNorm via ``softmax`` over groups of 8, all Q heads evaluated then two picked, two-hot
  expectation by ``softmax(x) · bins``.
* :class:`TDMPC2Fused` repacks those weights (see its docstring) so the same maths runs in fewer,
  larger matrix multiplies and cheaper element-wise passes.

Randomness (policy noise, which two Q heads, RSSM state noise) is drawn *outside* the pure
``rollout_cost`` from an explicit ``torch.Generator`` so ``rollout_cost`` can be compiled and two
implementations can be fed identical noise.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Noise = dict[str, Tensor]
CostFn = Callable[[Tensor, Noise], Tensor]


class SyntheticModel(nn.Module, ABC):
    """A world model reduced to what a planner needs: a fixed start state and a cost.

    ``state_dim``-wide states ``B×S`` flow through :meth:`step`; :meth:`rollout_cost` is the pure
    (compilable) objective given pre-drawn noise, :meth:`draw_noise` draws that noise.
    """

    action_dim: int
    state_dim: int
    discount: float
    #: trajectories the model's own policy contributes per plan (TD-MPC2's ``num_pi_trajs``)
    has_prior: bool = False
    #: :meth:`step` accepts the ``1×S`` start state against ``B×A`` actions, so the state-only
    #: part of the first transition is computed once per call instead of once per sequence
    #: (possible because the planner seam shares one start state across all ``B`` sequences)
    broadcast_start: bool = False

    @abstractmethod
    def initial_state(self) -> Tensor:
        """Start state ``S`` every rollout begins from."""

    @abstractmethod
    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator) -> Noise:
        """Every random number one :meth:`rollout_cost` call over ``batch`` sequences needs."""

    @abstractmethod
    def step(
        self, state: Tensor, action: Tensor, step_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """One transition: state ``B×S``, action ``B×A`` and this step's slice of
        ``noise["step"]`` (if the model draws per-step noise) -> (next state ``B×S``, reward ``B``)."""

    def terminal_value(self, state: Tensor, noise: Noise) -> Tensor:
        """Value ``B`` of the final state (zero unless the model has a critic)."""
        return state.new_zeros(state.shape[0])

    def rollout_cost(self, actions: Tensor, noise: Noise) -> Tensor:
        """``B×H×A`` -> cost ``B`` = -(Σ_t γ^t r_t + γ^H V(s_H))."""
        batch, horizon, _ = actions.shape
        state = self.initial_state().reshape(1, -1)
        if not self.broadcast_start:
            state = state.expand(batch, -1)
        ret = actions.new_zeros(batch)
        steps = noise.get("step")
        for t in range(horizon):
            state, reward = self.step(state, actions[:, t], None if steps is None else steps[t])
            ret = ret + self.discount**t * reward
        return -(ret + self.discount**horizon * self.terminal_value(state, noise))

    def prior(self, num: int, horizon: int, generator: torch.Generator) -> Tensor | None:
        """``P×H×A`` policy-prior trajectories, or ``None`` for models without a policy."""
        return None


def objective(
    model: SyntheticModel, generator: torch.Generator, cost_fn: CostFn | None = None
) -> Callable[[Tensor], Tensor]:
    """``actions B×H×A -> cost B`` drawing fresh noise from ``generator`` on every call;
    ``cost_fn`` defaults to ``model.rollout_cost`` (pass a compiled one to compile)."""
    fn = model.rollout_cost if cost_fn is None else cost_fn

    def f(actions: Tensor) -> Tensor:
        return fn(actions, model.draw_noise(actions.shape[0], actions.shape[1], generator))

    return f


# -- TD-MPC2 --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TDMPC2Size:
    """Architecture of tdmpc2's ``WorldModel`` (``common/__init__.py`` MODEL_SIZE + config.yaml)."""

    latent_dim: int = 512
    mlp_dim: int = 512
    action_dim: int = 6
    num_q: int = 5
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    simnorm_dim: int = 8
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    discount: float = 0.99


TDMPC2_5M = TDMPC2Size(latent_dim=512, mlp_dim=512, num_q=5)
TDMPC2_1M = TDMPC2Size(latent_dim=128, mlp_dim=384, num_q=2)


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * (torch.exp(torch.abs(x)) - 1)


def _normed_mlp(dims: list[int], last: str) -> nn.Sequential:
    """tdmpc2 ``layers.mlp``: NormedLinear (Linear, LayerNorm, Mish) for every hidden layer; the
    last layer is a plain Linear (``last='linear'``) or Linear + LayerNorm + SimNorm."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.LayerNorm(dims[i + 1]), nn.Mish()]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if last == "simnorm":
        layers.append(nn.LayerNorm(dims[-1]))
    return nn.Sequential(*layers)


class _TDMPC2Base(SyntheticModel):
    """What both TD-MPC2 implementations share: the start latent and the noise of one plan (the
    policy's Gaussian draw at the horizon and the two Q heads averaged there, as tdmpc2 draws
    them)."""

    has_prior = True
    size: TDMPC2Size
    z0: Tensor

    def initial_state(self) -> Tensor:
        return self.z0

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator) -> Noise:
        dev = generator.device
        eps = torch.randn(batch, self.action_dim, generator=generator, device=dev)
        heads = torch.randperm(self.size.num_q, generator=generator, device=dev)[:2]
        return {"pi_eps": eps.to(self.z0.device), "heads": heads.to(self.z0.device)}


class TDMPC2Reference(_TDMPC2Base):
    """TD-MPC2 world model, evaluated the way tdmpc2 does it (one Linear per ``NormedLinear``).

    Shapes: latent ``L``, hidden ``M``, actions ``A``, value bins ``K`` (101).
    """

    bins: Tensor

    def __init__(self, size: TDMPC2Size = TDMPC2_5M, seed: int = 0) -> None:
        super().__init__()
        self.size = size
        self.action_dim, self.state_dim, self.discount = (
            size.action_dim,
            size.latent_dim,
            size.discount,
        )
        lat, mlp, act, bins = size.latent_dim, size.mlp_dim, size.action_dim, size.num_bins
        gen = torch.Generator().manual_seed(seed)
        self.dynamics = _normed_mlp([lat + act, mlp, mlp, lat], "simnorm")
        self.reward = _normed_mlp([lat + act, mlp, mlp, bins], "linear")
        self.pi = _normed_mlp([lat, mlp, mlp, 2 * act], "linear")
        self.qs = nn.ModuleList(
            _normed_mlp([lat + act, mlp, mlp, bins], "linear") for _ in range(size.num_q)
        )
        # Seeded weights (uniform ±1/√fan_in like nn.Linear, LayerNorm affine near 1/0) so the
        # objective is non-trivial and identical across runs and devices.
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                bound = 1 / math.sqrt(mod.in_features)
                mod.weight.data.uniform_(-bound, bound, generator=gen)
                mod.bias.data.uniform_(-bound, bound, generator=gen)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.data.uniform_(0.8, 1.2, generator=gen)
                mod.bias.data.uniform_(-0.1, 0.1, generator=gen)
        self.register_buffer("z0", self._simnorm(torch.randn(lat, generator=gen) * 2))
        self.register_buffer("bins", torch.linspace(size.vmin, size.vmax, bins))
        self.requires_grad_(False)

    # tdmpc2 building blocks ------------------------------------------------------------------
    def _simnorm(self, x: Tensor) -> Tensor:
        shp = x.shape
        return F.softmax(x.view(*shp[:-1], -1, self.size.simnorm_dim), dim=-1).view(shp)

    def _two_hot_inv(self, logits: Tensor) -> Tensor:
        return symexp(torch.sum(F.softmax(logits, dim=-1) * self.bins, dim=-1))

    def _next(self, z: Tensor, a: Tensor) -> Tensor:
        return self._simnorm(self.dynamics(torch.cat([z, a], dim=-1)))

    def _pi(self, z: Tensor, eps: Tensor) -> Tensor:
        """Sampled squashed policy action ``B×A`` (tdmpc2 ``WorldModel.pi``'s ``pi``)."""
        mu, log_std = self.pi(z).chunk(2, dim=-1)
        s = self.size
        log_std = s.log_std_min + 0.5 * (s.log_std_max - s.log_std_min) * (torch.tanh(log_std) + 1)
        return torch.tanh(mu + eps * log_std.exp())

    def _q_avg(self, z: Tensor, a: Tensor, heads: Tensor) -> Tensor:
        # tdmpc2 runs the whole ensemble (vmap) and then averages two random heads.
        za = torch.cat([z, a], dim=-1)
        out = torch.stack([q(za) for q in self.qs])  # num_q×B×K
        return self._two_hot_inv(out[heads]).mean(0)

    # SyntheticModel ---------------------------------------------------------------------------
    def step(
        self, state: Tensor, action: Tensor, step_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        za = torch.cat([state, action], dim=-1)
        reward = self._two_hot_inv(self.reward(za))
        return self._simnorm(self.dynamics(za)), reward

    def terminal_value(self, state: Tensor, noise: Noise) -> Tensor:
        return self._q_avg(state, self._pi(state, noise["pi_eps"]), noise["heads"])

    def prior(self, num: int, horizon: int, generator: torch.Generator) -> Tensor:
        """tdmpc2 ``_plan``: roll the policy through the dynamics from ``z0``."""
        z = self.z0.expand(num, -1)
        acts = []
        for t in range(horizon):
            eps = torch.randn(num, self.action_dim, generator=generator, device=generator.device)
            acts.append(self._pi(z, eps.to(z.device)))
            if t < horizon - 1:
                z = self._next(z, acts[-1])
        return torch.stack(acts, dim=1)


def _mish(x: Tensor) -> Tensor:
    """Mish = x·tanh(softplus(x)) written with one exp: tanh(log(1+e)) = n/(n+2), n = e(e+2).
    Identical maths; ~3× cheaper than ``F.mish`` on CPU, and fuses to one loop when compiled.
    Clamping at 20 only affects x where n/(n+2) already rounds to 1 in fp32."""
    e = torch.exp(x.clamp(max=20.0))
    n = e * (e + 2)
    return x * n / (n + 2)


class TDMPC2Fused(_TDMPC2Base):
    """The same function as a :class:`TDMPC2Reference` with its weights repacked:

    * the first Linear of dynamics and reward (both read ``[z, a]``) is one ``L×2M`` matmul on ``z``
      plus an ``A×2M`` one on ``a`` (split weight, no ``cat``); policy and both chosen Q heads read
      the final latent, so their ``z`` parts are one ``L×3M`` matmul;
    * only the two Q heads actually averaged are evaluated (tdmpc2 evaluates all ``num_q``);
    * the latent is stored with its coordinates permuted to ``(within-group, group)`` order, so
      SimNorm's softmax over groups of 8 reduces over a strided dim with contiguous rows
      (vectorises) instead of over 8 adjacent floats; the permutation is folded into the weights;
    * the two-hot expectation ``softmax(x)·bins`` is ``exp(x-max) @ [bins, 1]``: one small matmul
      gives numerator and denominator;
    * Mish via one ``exp`` (:func:`_mish`); weights stored ``in×out`` for ``addmm``;
    * the first transition's ``z`` product is computed once for the shared start latent
      (``broadcast_start``), not once per sequence.
    """

    broadcast_start = True

    # buffers (weights stored in×out; q_* stacked over heads)
    bins1: Tensor
    perm: Tensor
    step_wz: Tensor
    step_wa: Tensor
    step_b0: Tensor
    step_g0: Tensor
    step_beta0: Tensor
    dyn_w1: Tensor
    dyn_b1: Tensor
    dyn_g1: Tensor
    dyn_beta1: Tensor
    dyn_w2: Tensor
    dyn_b2: Tensor
    rew_w1: Tensor
    rew_b1: Tensor
    rew_g1: Tensor
    rew_beta1: Tensor
    rew_w2: Tensor
    rew_b2: Tensor
    dyn_g2: Tensor
    dyn_beta2: Tensor
    pi_wz: Tensor
    pi_b0: Tensor
    pi_g0: Tensor
    pi_beta0: Tensor
    pi_w1: Tensor
    pi_b1: Tensor
    pi_g1: Tensor
    pi_beta1: Tensor
    pi_w2: Tensor
    pi_b2: Tensor
    q_wz: Tensor
    q_wa: Tensor
    q_b0: Tensor
    q_g0: Tensor
    q_beta0: Tensor
    q_w1: Tensor
    q_b1: Tensor
    q_g1: Tensor
    q_beta1: Tensor
    q_w2: Tensor
    q_b2: Tensor

    def __init__(self, ref: TDMPC2Reference) -> None:
        super().__init__()
        s = self.size = ref.size
        self.action_dim, self.state_dim, self.discount = ref.action_dim, ref.state_dim, s.discount
        lat, g = s.latent_dim, s.simnorm_dim
        # new coordinate j = i·(L/g) + group  <->  old coordinate group·g + i
        perm = torch.arange(lat).view(lat // g, g).t().reshape(-1)
        self.groups = lat // g

        def lin(seq: nn.Sequential, i: int) -> tuple[Tensor, Tensor]:
            layer = seq[i]
            assert isinstance(layer, nn.Linear)
            return layer.weight.detach().t().contiguous(), layer.bias.detach().clone()

        def ln(seq: nn.Sequential, i: int) -> tuple[Tensor, Tensor]:
            layer = seq[i]
            assert isinstance(layer, nn.LayerNorm)
            return layer.weight.detach().clone(), layer.bias.detach().clone()

        def split_in(w: Tensor) -> tuple[Tensor, Tensor]:
            """``(L+A)×N`` -> latent rows (permuted) and action rows."""
            return w[:lat][perm].contiguous(), w[lat:].contiguous()

        def buf(name: str, t: Tensor) -> None:
            self.register_buffer(name, t.contiguous())

        # step: dynamics | reward first layers, side by side
        dw0, db0 = lin(ref.dynamics, 0)
        rw0, rb0 = lin(ref.reward, 0)
        dz, da = split_in(dw0)
        rz, ra = split_in(rw0)
        buf("step_wz", torch.cat([dz, rz], 1))  # L×2M
        buf("step_wa", torch.cat([da, ra], 1))  # A×2M
        buf("step_b0", torch.cat([db0, rb0]))
        buf("step_g0", torch.stack([ln(ref.dynamics, 1)[0], ln(ref.reward, 1)[0]]))  # 2×M
        buf("step_beta0", torch.stack([ln(ref.dynamics, 1)[1], ln(ref.reward, 1)[1]]))
        for name, seq in (("dyn", ref.dynamics), ("rew", ref.reward)):
            w1, b1 = lin(seq, 3)
            g1, be1 = ln(seq, 4)
            w2, b2 = lin(seq, 6)
            buf(f"{name}_w1", w1)
            buf(f"{name}_b1", b1)
            buf(f"{name}_g1", g1)
            buf(f"{name}_beta1", be1)
            if name == "dyn":  # output coordinates permuted
                w2, b2 = w2[:, perm], b2[perm]
                g2, be2 = ln(seq, 7)
                buf("dyn_g2", g2[perm])
                buf("dyn_beta2", be2[perm])
            buf(f"{name}_w2", w2)
            buf(f"{name}_b2", b2)
        # terminal: policy and Q heads
        pw0, pb0 = lin(ref.pi, 0)
        buf("pi_wz", pw0[perm])
        buf("pi_b0", pb0)
        buf("pi_g0", ln(ref.pi, 1)[0])
        buf("pi_beta0", ln(ref.pi, 1)[1])
        for key, idx in (("w1", 3), ("w2", 6)):
            w, b = lin(ref.pi, idx)
            buf(f"pi_{key}", w)
            buf(f"pi_b{key[1]}", b)
        buf("pi_g1", ln(ref.pi, 4)[0])
        buf("pi_beta1", ln(ref.pi, 4)[1])
        q_parts: dict[str, list[Tensor]] = {}
        for q in ref.qs:
            assert isinstance(q, nn.Sequential)
            w0, b0 = lin(q, 0)
            wz, wa = split_in(w0)
            w1, b1 = lin(q, 3)
            w2, b2 = lin(q, 6)
            for k, v in {
                "wz": wz,
                "wa": wa,
                "b0": b0,
                "g0": ln(q, 1)[0],
                "beta0": ln(q, 1)[1],
                "w1": w1,
                "b1": b1,
                "g1": ln(q, 4)[0],
                "beta1": ln(q, 4)[1],
                "w2": w2,
                "b2": b2,
            }.items():
                q_parts.setdefault(k, []).append(v)
        for k, vs in q_parts.items():
            buf(f"q_{k}", torch.stack(vs))  # num_q×...
        buf("z0", ref.z0[perm])
        buf("bins1", torch.stack([ref.bins, torch.ones_like(ref.bins)], 1))  # K×2
        self.register_buffer("perm", perm)

    # building blocks ---------------------------------------------------------------------------
    def _ln_mish(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return _mish(F.layer_norm(x, x.shape[-1:]) * gamma + beta)

    def _simnorm(self, x: Tensor) -> Tensor:
        """SimNorm in the permuted layout: ``B×L`` viewed ``B×g×(L/g)``, softmax over dim 1."""
        v = x.view(x.shape[0], -1, self.groups)
        e = torch.exp(v - v.amax(1, keepdim=True))
        return (e / e.sum(1, keepdim=True)).view(x.shape)

    def _two_hot_inv(self, logits: Tensor) -> Tensor:
        e = torch.exp(logits - logits.amax(-1, keepdim=True))
        nd = e @ self.bins1  # ...×2: Σ e·bins, Σ e
        return symexp(nd[..., 0] / nd[..., 1])

    def _pi_from_hidden(self, h0: Tensor, eps: Tensor) -> Tensor:
        """Policy given its first pre-activation ``B×M``."""
        h = self._ln_mish(h0, self.pi_g0, self.pi_beta0)
        h = self._ln_mish(torch.addmm(self.pi_b1, h, self.pi_w1), self.pi_g1, self.pi_beta1)
        mu, log_std = torch.addmm(self.pi_b2, h, self.pi_w2).chunk(2, dim=-1)
        s = self.size
        log_std = s.log_std_min + 0.5 * (s.log_std_max - s.log_std_min) * (torch.tanh(log_std) + 1)
        return torch.tanh(mu + eps * log_std.exp())

    # SyntheticModel ---------------------------------------------------------------------------
    def step(
        self, state: Tensor, action: Tensor, step_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        batch, m = action.shape[0], self.size.mlp_dim
        h = torch.addmm(self.step_b0, state, self.step_wz)  # B×2M (or 1×2M): dynamics | reward
        h = torch.addmm(h.expand(batch, -1), action, self.step_wa)
        h = _mish(F.layer_norm(h.view(batch, 2, m), (m,)) * self.step_g0 + self.step_beta0)
        hd = self._ln_mish(
            torch.addmm(self.dyn_b1, h[:, 0], self.dyn_w1), self.dyn_g1, self.dyn_beta1
        )
        hr = self._ln_mish(
            torch.addmm(self.rew_b1, h[:, 1], self.rew_w1), self.rew_g1, self.rew_beta1
        )
        z = torch.addmm(self.dyn_b2, hd, self.dyn_w2)
        z = self._simnorm(F.layer_norm(z, z.shape[-1:]) * self.dyn_g2 + self.dyn_beta2)
        reward = self._two_hot_inv(torch.addmm(self.rew_b2, hr, self.rew_w2))
        return z, reward

    def terminal_value(self, state: Tensor, noise: Noise) -> Tensor:
        heads = noise["heads"]
        batch, m = state.shape[0], self.size.mlp_dim
        wz = torch.cat([self.pi_wz, *self.q_wz.index_select(0, heads).unbind(0)], 1)  # L×3M
        b0 = torch.cat([self.pi_b0, *self.q_b0.index_select(0, heads).unbind(0)])
        h = torch.addmm(b0, state, wz)  # B×3M: policy | Q_i | Q_j (latent part)
        action = self._pi_from_hidden(h[:, :m], noise["pi_eps"])
        hq = h[:, m:].view(batch, 2, m).transpose(0, 1)  # 2×B×M
        hq = torch.baddbmm(hq, action.expand(2, -1, -1), self.q_wa.index_select(0, heads))

        def sel(name: str) -> Tensor:
            return getattr(self, name).index_select(0, heads).unsqueeze(1)  # 2×1×...

        hq = self._ln_mish(hq, sel("q_g0"), sel("q_beta0"))
        hq = torch.baddbmm(sel("q_b1"), hq, self.q_w1.index_select(0, heads))
        hq = self._ln_mish(hq, sel("q_g1"), sel("q_beta1"))
        logits = torch.baddbmm(sel("q_b2"), hq, self.q_w2.index_select(0, heads))  # 2×B×K
        return self._two_hot_inv(logits).mean(0)

    def prior(self, num: int, horizon: int, generator: torch.Generator) -> Tensor:
        z = self.z0.expand(num, -1)
        acts = []
        for t in range(horizon):
            eps = torch.randn(num, self.action_dim, generator=generator, device=generator.device)
            h0 = torch.addmm(self.pi_b0, z, self.pi_wz)
            acts.append(self._pi_from_hidden(h0, eps.to(z.device)))
            if t < horizon - 1:
                z, _ = self.step(z, acts[-1], None)
        return torch.stack(acts, dim=1)

    def to_reference_latent(self, z: Tensor) -> Tensor:
        """Undo the coordinate permutation (for checks against :class:`TDMPC2Reference`)."""
        out = torch.empty_like(z)
        out[..., self.perm] = z
        return out


# -- PlaNet RSSM ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RSSMSize:
    """PlaNet's recurrent state-space model (Hafner et al. 2019; Kaixhin/PlaNet defaults)."""

    belief_dim: int = 200  # GRU hidden state h
    state_dim: int = 30  # stochastic state s
    hidden_dim: int = 200  # MLP width
    action_dim: int = 6
    min_std: float = 0.1
    discount: float = 1.0  # PlaNet sums rewards undiscounted


class _RSSMBase(SyntheticModel):
    """What both RSSM implementations share: the start state and the per-step state noise."""

    size: RSSMSize
    start: Tensor

    def initial_state(self) -> Tensor:
        return self.start

    def draw_noise(self, batch: int, horizon: int, generator: torch.Generator) -> Noise:
        eps = torch.randn(
            horizon, batch, self.size.state_dim, generator=generator, device=generator.device
        )
        return {"step": eps.to(self.start.device)}


class RSSMReference(_RSSMBase):
    """RSSM prior rollout + reward head, written the straightforward way.

    State ``B×(D+S)`` = ``[h, s]``. One step: ``x = relu(W[s, a])``, ``h' = GRU(x, h)``,
    ``(μ, σ) = W relu(W h')``, ``s' = μ + (softplus(σ) + min_std)·ε``, ``r = MLP([h', s'])``.
    """

    start: Tensor

    def __init__(self, size: RSSMSize = RSSMSize(), seed: int = 0) -> None:
        super().__init__()
        self.size = size
        d, s, hd, a = size.belief_dim, size.state_dim, size.hidden_dim, size.action_dim
        self.action_dim, self.state_dim, self.discount = a, d + s, size.discount
        gen = torch.Generator().manual_seed(seed)
        self.embed = nn.Linear(s + a, d)
        self.gru = nn.GRUCell(d, d)
        self.prior_hidden = nn.Linear(d, hd)
        self.prior_out = nn.Linear(hd, 2 * s)
        self.reward = nn.Sequential(
            nn.Linear(d + s, hd), nn.ReLU(), nn.Linear(hd, hd), nn.ReLU(), nn.Linear(hd, 1)
        )
        for p in self.parameters():
            bound = 1 / math.sqrt(p.shape[-1] if p.dim() > 1 else d)
            p.data.uniform_(-bound, bound, generator=gen)
        self.register_buffer("start", torch.randn(d + s, generator=gen))
        self.requires_grad_(False)

    def step(
        self, state: Tensor, action: Tensor, step_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        assert step_noise is not None
        h, s = state.split([self.size.belief_dim, self.size.state_dim], dim=-1)
        x = F.relu(self.embed(torch.cat([s, action], dim=-1)))
        h = self.gru(x, h)
        mean, std = self.prior_out(F.relu(self.prior_hidden(h))).chunk(2, dim=-1)
        s = mean + (F.softplus(std) + self.size.min_std) * step_noise
        hs = torch.cat([h, s], dim=-1)
        return hs, self.reward(hs).squeeze(-1)


class RSSMFused(_RSSMBase):
    """:class:`RSSMReference` with repacked weights: the embedding's Linear split into state and
    action parts (no ``cat``), and the two Linears that read ``h'`` (prior hidden layer, reward's
    first layer, ``h`` part) run as one ``D×2Hd`` matmul."""

    emb_ws: Tensor
    emb_wa: Tensor
    emb_b: Tensor
    h_w: Tensor
    h_b: Tensor
    po_w: Tensor
    po_b: Tensor
    rs_w: Tensor
    r1_w: Tensor
    r1_b: Tensor
    r2_w: Tensor
    r2_b: Tensor
    start: Tensor

    def __init__(self, ref: RSSMReference) -> None:
        super().__init__()
        self.size = sz = ref.size
        d, s = sz.belief_dim, sz.state_dim
        self.action_dim, self.state_dim, self.discount = ref.action_dim, ref.state_dim, ref.discount
        self.gru = ref.gru
        we = ref.embed.weight.t()
        r0, r1, r2 = ref.reward[0], ref.reward[2], ref.reward[4]
        assert isinstance(r0, nn.Linear)
        assert isinstance(r1, nn.Linear)
        assert isinstance(r2, nn.Linear)
        wr0 = r0.weight.t()
        self.register_buffer("emb_ws", we[:s].contiguous())
        self.register_buffer("emb_wa", we[s:].contiguous())
        self.register_buffer("emb_b", ref.embed.bias.clone())
        self.register_buffer(
            "h_w", torch.cat([ref.prior_hidden.weight.t(), wr0[:d]], 1).contiguous()
        )  # D×2Hd: prior hidden | reward (h part)
        self.register_buffer("h_b", torch.cat([ref.prior_hidden.bias, r0.bias]))
        self.register_buffer("po_w", ref.prior_out.weight.t().contiguous())
        self.register_buffer("po_b", ref.prior_out.bias.clone())
        self.register_buffer("rs_w", wr0[d:].contiguous())  # S×Hd: reward (s part)
        self.register_buffer("r1_w", r1.weight.t().contiguous())
        self.register_buffer("r1_b", r1.bias.clone())
        self.register_buffer("r2_w", r2.weight.t().contiguous())
        self.register_buffer("r2_b", r2.bias.clone())
        self.register_buffer("start", ref.start.clone())
        self.requires_grad_(False)

    def step(
        self, state: Tensor, action: Tensor, step_noise: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        assert step_noise is not None
        sz = self.size
        h, s = state.split([sz.belief_dim, sz.state_dim], dim=-1)
        x = torch.addmm(self.emb_b, s, self.emb_ws)
        x = F.relu(torch.addmm(x, action, self.emb_wa))
        h = self.gru(x, h)
        both = torch.addmm(self.h_b, h, self.h_w)  # B×2Hd
        ph, rh = both.split([sz.hidden_dim, sz.hidden_dim], dim=-1)
        mean, std = torch.addmm(self.po_b, F.relu(ph), self.po_w).chunk(2, dim=-1)
        s = mean + (F.softplus(std) + sz.min_std) * step_noise
        r = F.relu(torch.addmm(rh, s, self.rs_w))
        r = F.relu(torch.addmm(self.r1_b, r, self.r1_w))
        reward = torch.addmm(self.r2_b, r, self.r2_w).squeeze(-1)
        return torch.cat([h, s], dim=-1), reward

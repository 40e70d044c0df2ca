"""DINO-WM (Zhou et al. 2024): a ViT predictor over the patch tokens of a visual encoder.

* Encoder: frozen DINOv2 (``dinov2_vits14``; patch tokens ``N×D``) or the trainable in-project
  ``conv`` encoder guarded against collapse (:class:`~.encoders.AntiCollapse`).
* Frame-skip ``s``: one model step covers ``s`` env actions, concatenated into one ``s·A``
  vector. History: the predictor sees the last ``k`` frames (``history``).
* Each patch token of frame ``t`` is ``[z_t^n (D) | proprio_emb_t (Ep) | action_emb_t (Ea)]``;
  the predictor (``width``-wide ViT) attends with a frame-level causal mask (a token attends to
  tokens of its own and earlier frames) and predicts ``[z_{t+1}^n | proprio_emb_{t+1}]``.
* Training: teacher-forced MSE against the encoder's tokens of the next frames (targets
  detached), plus a decoder trained on detached tokens only (it visualises imagined rollouts and
  never shapes the latent space).

Rollout: ``actions B×H×A`` with ``H = M·s`` -> ``latents B×M×(N·D)`` (flattened predicted patch
tokens after each frame-skip block; the goal costs compare these with the goal image's tokens,
mean squared error over all ``N·D`` entries), ``extras["proprio_latents"] B×M×Ep`` and, with a
decoder, ``frames B×M×3×h×w``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Rollout
from .encoders import AntiCollapse, Block, PatchEncoder, make_encoder
from .registry import LearnedModel, ModelSpec, register_model


@dataclass(frozen=True)
class DinoWMConfig:
    """Action size ``A``, image size and proprio size come from the :class:`ModelSpec`.
    use_proprio: embed ``proprio`` observations (if the env has them). encoder /
    encoder_options: a registered encoder (:mod:`.encoders`).
    history: frames the predictor sees; frameskip: env actions per model step.
    width/depth/heads/mlp_ratio: predictor ViT. proprio_loss_weight: weight of the predicted
    proprio embedding's MSE. residual: predict each frame's change (next tokens and proprio
    embedding = the current ones + the predictor's output) instead of the next frame itself (an
    option of ours; DINO-WM's predictor outputs the next frame); "nothing moves" is then the
    untrained model's answer, which matters for the small motions near a goal.
    rollout_loss_weight: weight of an open-loop loss (an option of ours; DINO-WM trains
    teacher-forced only): from the window's first frame the predictor is fed its own
    predictions for the window's ``history`` steps, as it is while planning, and frames
    ``2..history`` are scored against the encoder's, with gradients through the chain.
    decoder: train a visualisation decoder. anti_collapse: VICReg settings (used only with a
    trainable encoder)."""

    obs: str = "pixels"
    use_proprio: bool = True
    encoder: str = "conv"
    encoder_options: Mapping[str, Any] = field(default_factory=dict)
    history: int = 3
    frameskip: int = 5
    action_emb_dim: int = 10
    proprio_emb_dim: int = 10
    width: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    proprio_loss_weight: float = 1.0
    rollout_loss_weight: float = 0.0
    residual: bool = False
    decoder: bool = True
    decoder_channels: int = 64
    anti_collapse: AntiCollapse = field(default_factory=AntiCollapse)

    #: options that weigh the training loss only: fine-tuning (``init_from``) may change them
    loss_fields: ClassVar[tuple[str, ...]] = (
        "proprio_loss_weight",
        "rollout_loss_weight",
        "anti_collapse",
    )

    def __post_init__(self) -> None:
        if isinstance(self.anti_collapse, Mapping):
            object.__setattr__(self, "anti_collapse", AntiCollapse(**self.anti_collapse))
        if self.obs != "pixels":
            raise ValueError(f"DINO-WM reads pixels, got obs={self.obs!r}")
        if self.rollout_loss_weight < 0 or self.proprio_loss_weight < 0:
            raise ValueError("loss weights must be >= 0")
        if self.rollout_loss_weight and self.history < 2:
            raise ValueError("rollout_loss_weight needs history >= 2 (frames 2.. are scored)")
        if min(self.history, self.frameskip, self.action_emb_dim, self.proprio_emb_dim) < 1:
            raise ValueError("history, frameskip and the embedding sizes must be >= 1")
        if self.width % self.heads or self.depth < 1:
            raise ValueError(f"width {self.width} must divide into {self.heads} heads; depth >= 1")


@dataclass
class DinoWMState:
    """Planning state: the last ``k <= history`` frames (oldest first).

    tokens ``k×N×D`` encoder patch tokens; proprio ``k×Ep`` embedded proprioception;
    actions ``(k-1)×(s·A)`` the action blocks executed between those frames.
    """

    tokens: Tensor
    proprio: Tensor
    actions: Tensor


def pixels_to_float(pixels: Tensor | np.ndarray) -> Tensor:
    """uint8 ``…×H×W×3`` -> float ``…×3×H×W`` in [0, 1]."""
    x = torch.as_tensor(pixels)
    return x.movedim(-1, -3).float() / 255.0


def frame_causal_mask(frames: int, tokens_per_frame: int, device: torch.device) -> Tensor:
    """``T×T`` bool (``T = frames·tokens_per_frame``): token i may attend to token j iff j's frame
    is not later than i's."""
    f = torch.arange(frames, device=device).repeat_interleave(tokens_per_frame)
    return f[None, :] <= f[:, None]


class Decoder(nn.Module):
    """Patch tokens ``B×N×D`` on a ``gh×gw`` grid -> images ``B×3×H×W`` in [0, 1]."""

    def __init__(self, dim: int, grid: tuple[int, int], image_size: tuple[int, int], ch: int):
        super().__init__()
        self.grid, self.image_size = grid, image_size
        layers: list[nn.Module] = [nn.Conv2d(dim, ch, 3, 1, 1), nn.GELU()]
        size = min(grid)
        while size < min(image_size):
            layers += [nn.ConvTranspose2d(ch, ch, 4, 2, 1), nn.GroupNorm(8, ch), nn.GELU()]
            size *= 2
        layers.append(nn.Conv2d(ch, 3, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, tokens: Tensor) -> Tensor:
        b, _, d = tokens.shape
        x = tokens.transpose(1, 2).reshape(b, d, *self.grid)
        x = self.net(x)
        if x.shape[-2:] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(x)


class Predictor(nn.Module):
    """ViT over ``k`` frames of ``N`` tokens with a frame-level causal mask.

    ``forward(x B×k×N×C_in) -> B×k×N×C_out``: position ``t`` predicts frame ``t+1``.
    """

    def __init__(self, cfg: DinoWMConfig, tokens: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.inp = nn.Linear(c_in, cfg.width)
        self.pos = nn.Parameter(torch.randn(1, cfg.history * tokens, cfg.width) * 0.02)
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio, layerscale=False) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.out = nn.Linear(cfg.width, c_out)

    def forward(self, x: Tensor, last_only: bool = False, shared: int = 0) -> Tensor:
        """``last_only``: return only the last frame's prediction ``B×1×N×C_out``, computing the
        last block for that frame's tokens only (exact: the causal mask lets the last frame see
        every frame, and nothing after the last block reads the other frames).

        ``shared``: the first ``shared`` frames of ``x`` are the same for the whole batch (while
        planning, the observed history before the candidates' first action). Frame-causal
        attention means their hidden states do not depend on later frames, so they are computed
        once at batch 1 and only attended to by the other frames (exact). Their predictions are
        not returned: ``shared`` needs ``last_only`` and ``shared < k``."""
        b, k, n, _ = x.shape
        if shared and (not last_only or not 0 < shared < k):
            raise ValueError(f"shared={shared} needs last_only and 0 < shared < k={k}")
        s = shared * n
        h_all = self.inp(x[:, shared:].reshape(b, (k - shared) * n, -1))
        h = h_all + self.pos[:, s : k * n]
        pre = self.inp(x[:1, :shared].reshape(1, s, -1)) + self.pos[:, :s] if shared else None
        full = frame_causal_mask(k, n, x.device)
        mask, pre_mask = full[s:], full[:s, :s]
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            if last_only and i == last:
                # the last frame's queries attend to every frame: no mask
                h = blk(h, None, (k - 1 - shared) * n, pre)
            else:
                h_next = blk(h, mask, 0, pre)
                pre = None if pre is None else blk(pre, pre_mask)
                h = h_next
        return self.out(self.norm(h)).reshape(b, -1, n, self.out.out_features)


@register_model("dino_wm")
class DinoWM(LearnedModel):
    """DINO-WM world model (see the module docstring)."""

    Config = DinoWMConfig
    provides = frozenset({"latents", "frames", "proprio_latents"})
    optional_outputs = frozenset({"frames"})

    def __init__(self, cfg: DinoWMConfig, spec: ModelSpec) -> None:
        super().__init__(cfg, spec)
        self.cfg = cfg
        self.action_dim = spec.action_dim
        self.image_size = (int(self.obs_shape[0]), int(self.obs_shape[1]))
        has_proprio = cfg.use_proprio and "proprio" in spec.obs_shapes
        self.proprio_dim = int(spec.obs_shapes["proprio"][0]) if has_proprio else 0
        self.encoder: PatchEncoder = make_encoder(cfg.encoder, **dict(cfg.encoder_options))
        self.grid = self.encoder.grid(self.image_size)
        self.num_tokens = self.grid[0] * self.grid[1]
        d, ep, ea = self.encoder.embed_dim, cfg.proprio_emb_dim, cfg.action_emb_dim
        self.action_encoder = nn.Linear(cfg.frameskip * self.action_dim, ea)
        # Without proprioception the proprio slot holds a learned constant embedding.
        self.proprio_encoder = nn.Linear(max(self.proprio_dim, 1), ep)
        self.predictor = Predictor(cfg, self.num_tokens, d + ep + ea, d + ep)
        self.decoder = (
            Decoder(d, self.grid, self.image_size, cfg.decoder_channels) if cfg.decoder else None
        )
        if not cfg.decoder:
            self.provides = frozenset({"latents", "proprio_latents"})

    @property
    def latent_dim(self) -> int:
        return self.num_tokens * self.encoder.embed_dim

    # -- encoding --------------------------------------------------------------------------------
    def encode_images(self, images: Tensor) -> Tensor:
        """float ``…×3×H×W`` -> tokens ``…×N×D`` (no gradient when the encoder is frozen)."""
        lead = images.shape[:-3]
        x = images.reshape(-1, *images.shape[-3:]).to(self.device)
        if x.shape[-2:] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        if self.encoder.trainable:
            z = self.encoder(x)
        else:
            with torch.no_grad():
                z = self.encoder(x)
        return z.reshape(*lead, *z.shape[-2:])

    def embed_proprio(self, proprio: Tensor | None, lead: tuple[int, ...]) -> Tensor:
        """``…×Pp`` -> ``…×Ep`` (a constant input when the model has no proprioception)."""
        if self.proprio_dim == 0 or proprio is None:
            if self.proprio_dim:
                raise ValueError(f"this model needs proprio ({self.proprio_dim} values)")
            return self.proprio_encoder(torch.zeros(*lead, 1, device=self.device))
        p = torch.as_tensor(proprio, dtype=torch.float32, device=self.device)
        if p.shape[-1] != self.proprio_dim:
            raise ValueError(f"proprio has {p.shape[-1]} values, model expects {self.proprio_dim}")
        return self.proprio_encoder(p)

    def encode(self, obs: Mapping[str, Any]) -> DinoWMState:
        """obs: ``pixels`` uint8 ``H×W×3`` or ``k×H×W×3`` (frames ``s`` env steps apart, oldest
        first; the last ``history`` are kept), ``proprio`` ``Pp`` or ``k×Pp`` (if the model uses
        it), optional ``actions`` ``(k-1)×(s·A)`` blocks between those frames (zeros if absent)."""
        px = torch.as_tensor(np.asarray(obs["pixels"]))
        if px.dim() == 3:
            px = px[None]
        px = px[-self.cfg.history :]
        k = px.shape[0]
        tokens = self.encode_images(pixels_to_float(px).to(self.device))
        pr = obs.get("proprio")
        if pr is not None:
            pr = torch.as_tensor(np.asarray(pr), dtype=torch.float32)
            pr = (pr[None] if pr.dim() == 1 else pr)[-k:]
        proprio = self.embed_proprio(pr, (k,))
        block = self.cfg.frameskip * self.action_dim
        acts = obs.get("actions")
        if acts is None or k == 1:
            a = torch.zeros(k - 1, block, device=self.device)
        else:
            a = torch.as_tensor(np.asarray(acts), dtype=torch.float32, device=self.device)
            a = a.reshape(-1, block)[-(k - 1) :]
            if a.shape[0] != k - 1:
                raise ValueError(
                    f"need {k - 1} past action blocks for {k} frames, got {a.shape[0]}"
                )
        return DinoWMState(tokens.detach(), proprio.detach(), a)

    # -- prediction --------------------------------------------------------------------------------
    def _tokens(self, z: Tensor, p: Tensor, a: Tensor) -> Tensor:
        """z ``B×k×N×D``, p ``B×k×Ep``, a ``B×k×(s·A)`` -> predictor input ``B×k×N×(D+Ep+Ea)``."""
        n = z.shape[2]
        pe = p[:, :, None].expand(-1, -1, n, -1)
        ae = self.action_encoder(a)[:, :, None].expand(-1, -1, n, -1)
        return torch.cat([z, pe, ae], -1)

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """``B×k×N×(D+Ep)`` -> visual ``B×k×N×D``, proprio embedding ``B×k×Ep`` (patch mean)."""
        d = self.encoder.embed_dim
        return out[..., :d], out[..., d:].mean(2)

    def rollout(
        self, state: DinoWMState, actions: Tensor, outputs: frozenset[str] | None = None
    ) -> Rollout:
        """``outputs``: the :class:`Rollout` fields wanted (``None``: all); ``frames`` are decoded
        only when wanted (a decode per candidate would cost more than the prediction)."""
        b, h, a_dim = actions.shape
        s = self.cfg.frameskip
        if h % s or a_dim != self.action_dim:
            raise ValueError(
                f"actions must be B×H×{self.action_dim} with H a multiple of frameskip {s}; "
                f"got {tuple(actions.shape)}"
            )
        blocks = actions.to(self.device).reshape(b, h // s, s * a_dim)
        z = state.tokens[None].expand(b, -1, -1, -1)
        p = state.proprio[None].expand(b, -1, -1)
        past = state.actions[None].expand(b, -1, -1)
        zs, ps = [], []
        # window frames whose inputs (tokens, proprio, following action) are the same for every
        # candidate: the observed frames before the last one (see Predictor.forward)
        shared = z.shape[1] - 1
        for m in range(blocks.shape[1]):
            a = torch.cat([past, blocks[:, m : m + 1]], 1)
            x = self._tokens(z, p, a)
            zn, pn = self._split(self.predictor(x, last_only=True, shared=shared if b > 1 else 0))
            if self.cfg.residual:
                zn, pn = zn + z[:, -1:], pn + p[:, -1:]
            shared = max(shared - max(z.shape[1] + 1 - self.cfg.history, 0), 0)
            zs.append(zn[:, 0])
            ps.append(pn[:, 0])
            # slide the history window: keep the last `history` frames and the actions between
            z = torch.cat([z, zn], 1)[:, -self.cfg.history :]
            p = torch.cat([p, pn], 1)[:, -self.cfg.history :]
            past = a[:, -(z.shape[1] - 1) :] if z.shape[1] > 1 else a[:, :0]
        tokens = torch.stack(zs, 1)  # B×M×N×D
        out = Rollout(latents=tokens.flatten(2), extras={"proprio_latents": torch.stack(ps, 1)})
        if self.decoder is not None and (outputs is None or "frames" in outputs):
            frames = self.decoder(tokens.flatten(0, 1).detach())
            out.frames = frames.reshape(b, -1, *frames.shape[1:])
        return out

    def goal_latent(
        self, pixels: np.ndarray | Tensor, proprio: Any = None
    ) -> tuple[Tensor, Tensor]:
        """Goal image ``H×W×3`` uint8 (+ optional proprio) -> (``N·D`` tokens, ``Ep`` embedding)."""
        with torch.no_grad():
            z = self.encode_images(pixels_to_float(torch.as_tensor(np.asarray(pixels)))[None])[0]
            pr = None if proprio is None else torch.as_tensor(np.asarray(proprio))[None]
            if self.proprio_dim and pr is None:
                pe = torch.zeros(1, self.cfg.proprio_emb_dim, device=self.device)
            else:
                pe = self.embed_proprio(pr, (1,))
        return z.flatten(), pe[0]

    # -- training -----------------------------------------------------------------------------------
    def _open_loop(
        self, z0: Tensor, p0: Tensor, a: Tensor, z1: Tensor, p1: Tensor
    ) -> tuple[Tensor, Tensor]:
        """From frame 0 (``z0`` ``B×1×N×D``, ``p0`` ``B×1×Ep``) and its teacher-forced
        prediction of frame 1 (``z1``, ``p1``), predict frames ``2..k`` from the predictor's own
        frames with the action blocks ``a`` ``B×k×(s·A)``: ``B×(k-1)×N×D``, ``B×(k-1)×Ep``."""
        z, p = torch.cat([z0, z1], 1), torch.cat([p0, p1], 1)
        for m in range(2, a.shape[1] + 1):
            zn, pn = self._split(self.predictor(self._tokens(z, p, a[:, :m]), last_only=True))
            if self.cfg.residual:
                zn, pn = zn + z[:, -1:], pn + p[:, -1:]
            z, p = torch.cat([z, zn], 1), torch.cat([p, pn], 1)
        return z[:, 2:], p[:, 2:]

    def loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """batch from ``SequenceLoader(seq_len >= history·frameskip)``: ``obs.pixels``
        ``B×(L+1)×H×W×3`` uint8, ``action`` ``B×L×A``, ``obs.proprio`` ``B×(L+1)×Pp``.
        Uses frames ``0, s, …, k·s`` and the action blocks between them."""
        k, s = self.cfg.history, self.cfg.frameskip
        need = k * s
        act = batch["action"].to(self.device, torch.float32)
        if act.shape[1] < need:
            raise ValueError(f"seq_len must be >= history·frameskip = {need}, got {act.shape[1]}")
        idx = torch.arange(0, need + 1, s)
        px = pixels_to_float(batch["obs.pixels"][:, idx]).to(self.device)  # B×(k+1)×3×H×W
        z = self.encode_images(px)  # B×(k+1)×N×D
        pr = batch.get("obs.proprio") if self.proprio_dim else None
        p = self.embed_proprio(None if pr is None else pr[:, idx], tuple(z.shape[:2]))
        a = act[:, :need].reshape(act.shape[0], k, s * self.action_dim)
        zp, pp = self._split(self.predictor(self._tokens(z[:, :k], p[:, :k], a)))
        if self.cfg.residual:
            # The change from the current frame. Not detached: with a detached base a trainable
            # encoder drifted into tokens that change unpredictably from frame to frame (the
            # token loss rose from 0.09 to 1.2 in 400 steps on the planar data).
            zp, pp = zp + z[:, :k], pp + p[:, :k]
        z_loss = F.mse_loss(zp, z[:, 1:].detach())
        p_loss = F.mse_loss(pp, p[:, 1:].detach()) if self.proprio_dim else z_loss.new_zeros(())
        loss = z_loss + self.cfg.proprio_loss_weight * p_loss
        metrics = {"z_loss": z_loss.item(), "proprio_loss": p_loss.item()}
        if self.cfg.rollout_loss_weight > 0:
            zo, po = self._open_loop(z[:, :1], p[:, :1], a, zp[:, :1], pp[:, :1])
            ro_z = F.mse_loss(zo, z[:, 2:].detach())
            ro_p = F.mse_loss(po, p[:, 2:].detach()) if self.proprio_dim else ro_z.new_zeros(())
            loss = loss + self.cfg.rollout_loss_weight * (
                ro_z + self.cfg.proprio_loss_weight * ro_p
            )
            metrics |= {"rollout_z_loss": ro_z.item(), "rollout_proprio_loss": ro_p.item()}
        if self.encoder.trainable:
            reg, m = self.cfg.anti_collapse(z)
            loss = loss + reg
            metrics |= m
        if self.decoder is not None:
            # trained on detached tokens only: visualisation never shapes the latent space
            rec = self.decoder(z.detach().flatten(0, 1))
            dec_loss = F.mse_loss(rec, px.flatten(0, 1))
            loss = loss + dec_loss
            metrics["decoder_loss"] = dec_loss.item()
        metrics["loss"] = loss.item()
        return loss, metrics

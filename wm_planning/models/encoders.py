"""Visual encoders that turn images into patch tokens, behind one registry.

* ``dinov2_vits14`` / ``dinov2_vitb14`` / ``dinov2_vits14_reg`` / ``dinov2_tiny`` : a frozen
  ViT written here with DINOv2's parameter names, so an official hub checkpoint (e.g.
  ``dinov2_vits14_pretrain.pth``) loads with ``strict=True``. Weights come from a local file
  (``weights=PATH``) or, for users with network, ``torch.hub.load("facebookresearch/dinov2",
  name)`` (``weights="hub"``). Output: DINOv2's ``x_norm_patchtokens``.
* ``conv`` : a small trainable in-project CNN (patch grid from strided convolutions). Trained
  jointly with a predictor it can collapse to a constant; :class:`AntiCollapse` adds VICReg
  variance/covariance terms and a std monitor that raises :class:`RepresentationCollapseError`.

Every encoder maps images ``B×3×H×W`` (float in [0, 1]) to tokens ``B×N×D``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wm_planning.registry import Registry

# -- registries -----------------------------------------------------------------------------------
EncoderFactory = Callable[..., "PatchEncoder"]
_ENCODERS: Registry[EncoderFactory] = Registry("encoder")
#: Decorator: ``make_encoder(name, **options)`` calls the factory.
register_encoder = _ENCODERS.register


def make_encoder(name: str, **options: Any) -> PatchEncoder:
    return _ENCODERS.get(name)(**options)


available_encoders = _ENCODERS.available


class PatchEncoder(nn.Module):
    """Images ``B×3×H×W`` in [0, 1] -> patch tokens ``B×N×D``."""

    embed_dim: int
    #: False: frozen (no gradients, eval mode); the world model's loss never updates it
    trainable: bool = False

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """Patch grid ``(h, w)`` for an input image size, ``N = h·w``."""
        raise NotImplementedError


# -- DINOv2-compatible ViT -------------------------------------------------------------------------
class WeightsError(ValueError):
    """A weights file does not match the architecture (missing/unexpected keys, shapes)."""


@dataclass(frozen=True)
class ViTConfig:
    """Architecture of a DINOv2 ViT. ``pretrain_size``: the image size the checkpoint's
    ``pos_embed`` was trained for (518 for the hub models: 37×37 patches)."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 14
    pretrain_size: int = 518
    num_register_tokens: int = 0
    layerscale: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by {self.num_heads} heads")
        if min(self.depth, self.patch_size, self.pretrain_size) < 1 or self.num_register_tokens < 0:
            raise ValueError(f"invalid ViT config {self}")


VIT_PRESETS: dict[str, ViTConfig] = {
    "dinov2_vits14": ViTConfig(384, 12, 6),
    "dinov2_vitb14": ViTConfig(768, 12, 12),
    "dinov2_vits14_reg": ViTConfig(384, 12, 6, num_register_tokens=4),
    "dinov2_vitb14_reg": ViTConfig(768, 12, 12, num_register_tokens=4),
}


class _LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        q_start: int = 0,
        prefix: Tensor | None = None,
    ) -> Tensor:
        """``x`` B×T×C -> B×(T-q_start)×C: only tokens ``q_start:`` of ``x`` query.
        ``prefix`` 1×P×C: tokens shared by the whole batch that precede ``x`` (keys/values only,
        projected once, not ``B`` times). ``mask`` (T-q_start)×(P+T) bool (True = may attend)
        or None."""
        b, t, c = x.shape
        hd = c // self.heads
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        if prefix is not None:
            w, bias = self.qkv.weight[c:], self.qkv.bias[c:]
            pk, pv = (
                F.linear(prefix, w, bias).reshape(1, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
            )
            k = torch.cat([pk.expand(b, -1, -1, -1), k], 2)
            v = torch.cat([pv.expand(b, -1, -1, -1), v], 2)
        q = q[:, :, q_start:]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, t - q_start, c))


class Block(nn.Module):
    """Pre-norm transformer block with DINOv2's names (``norm1``, ``attn.qkv``, ``ls1.gamma``,
    ``mlp.fc1``...). Also the predictor's block (``layerscale=False`` there)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, layerscale: bool = True) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.ls1: nn.Module = _LayerScale(dim) if layerscale else nn.Identity()
        self.ls2: nn.Module = _LayerScale(dim) if layerscale else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        q_start: int = 0,
        prefix: Tensor | None = None,
    ) -> Tensor:
        """``x`` B×T×C -> B×(T-q_start)×C: only tokens ``q_start:`` are updated and returned (the
        last block of a predictor whose earlier outputs are not needed). ``prefix`` 1×P×C: this
        block's input for tokens shared by the batch that precede ``x`` (attended, not updated);
        ``mask`` as :class:`_Attention`'s."""
        pre = None if prefix is None else self.norm1(prefix)
        x = x[:, q_start:] + self.ls1(self.attn(self.norm1(x), mask, q_start, pre))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B×N×D


class DinoViT(nn.Module):
    """DINOv2's ``DinoVisionTransformer`` (MLP FFN, no block chunks), same state-dict keys:
    ``cls_token``, ``pos_embed``, ``register_tokens`` (reg variants), ``mask_token``,
    ``patch_embed.proj.*``, ``blocks.{i}.*``, ``norm.*``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, m = cfg.embed_dim, cfg.pretrain_size // cfg.patch_size
        self.patch_embed = _PatchEmbed(cfg.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + m * m, d) * 0.02)
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d))
            if cfg.num_register_tokens
            else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.layerscale) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def interpolate_pos_encoding(self, h: int, w: int) -> Tensor:
        """``1×(1+h·w)×D`` position embedding for an ``h×w`` patch grid: DINOv2's bicubic
        resize of the pretraining grid (with its 0.1 offset on the scale factor, so the
        interpolation matches the official model's numbers)."""
        pos = self.pos_embed.float()
        n = pos.shape[1] - 1
        m = int(math.sqrt(n))
        if h == m and w == m:
            return self.pos_embed
        grid = pos[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid,
            scale_factor=((h + 0.1) / m, (w + 0.1) / m),
            mode="bicubic",
            antialias=False,
        )
        if grid.shape[-2:] != (h, w):
            raise RuntimeError(
                f"pos_embed interpolation gave {tuple(grid.shape[-2:])}, not {(h, w)}"
            )
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([pos[:, :1], grid], 1).to(self.pos_embed.dtype)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        """``x`` B×3×H×W normalised -> ``x_norm_clstoken`` B×D, ``x_norm_patchtokens`` B×N×D."""
        b, _, h, w = x.shape
        p = self.cfg.patch_size
        t = self.patch_embed(x)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], 1)
        t = t + self.interpolate_pos_encoding(h // p, w // p)
        if self.register_tokens is not None:
            t = torch.cat([t[:, :1], self.register_tokens.expand(b, -1, -1), t[:, 1:]], 1)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)
        r = 1 + self.cfg.num_register_tokens
        return {"x_norm_clstoken": t[:, 0], "x_norm_patchtokens": t[:, r:]}


def load_dinov2_state_dict(model: DinoViT, path: str | Path) -> None:
    """Load a DINOv2-format checkpoint strictly; errors name the missing/unexpected/mis-shaped
    keys. Accepts a bare state dict or one under ``"model"``/``"state_dict"``/``"teacher"``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"DINOv2 weights {path} not found; download e.g. "
            "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth "
            "or use weights=hub on a machine with network"
        )
    raw = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path} does not hold a state dict (got {type(raw).__name__})")
    for key in ("model", "state_dict", "teacher"):
        if key in raw and isinstance(raw[key], Mapping):
            raw = raw[key]
    sd = {str(k).removeprefix("backbone."): v for k, v in raw.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(sd))
        if sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{path} does not match {model.cfg}: missing keys {missing[:8]}"
            f"{'…' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
            f"{'…' if len(unexpected) > 8 else ''}, shape mismatches {shapes[:8]}"
        )
    model.load_state_dict(sd, strict=True)


_MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation DINOv2 was trained with
_STD = (0.229, 0.224, 0.225)


class DinoEncoder(PatchEncoder):
    """Frozen DINOv2 ViT. Images are resized to ``input_size`` (a multiple of the patch size;
    224 → 16×16 patches as in DINO-WM) and ImageNet-normalised."""

    trainable = False

    def __init__(self, vit: DinoViT, input_size: int = 224) -> None:
        super().__init__()
        if input_size % vit.cfg.patch_size:
            raise ValueError(
                f"input_size {input_size} must be a multiple of patch {vit.cfg.patch_size}"
            )
        self.vit = vit.eval().requires_grad_(False)
        self.input_size = input_size
        self.embed_dim = vit.cfg.embed_dim
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> DinoEncoder:
        super().train(mode)
        self.vit.eval()  # frozen: never in training mode
        return self

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        g = self.input_size // self.vit.cfg.patch_size
        return g, g

    def forward(self, images: Tensor) -> Tensor:
        s = self.input_size
        if images.shape[-2:] != (s, s):
            images = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False)
        x = (images - self.mean) / self.std
        return self.vit.forward_features(x)["x_norm_patchtokens"]


def dino_encoder(
    preset: str | ViTConfig, weights: str | None, input_size: int = 224, hub_name: str = ""
) -> DinoEncoder:
    """Build a frozen DINOv2 encoder. ``weights``: a local checkpoint path, ``"hub"`` (download
    through ``torch.hub``; needs network) or ``None`` (random init: only for tests/debugging)."""
    cfg = VIT_PRESETS[preset] if isinstance(preset, str) else preset
    vit = DinoViT(cfg)
    if weights == "hub":
        hub = torch.hub.load("facebookresearch/dinov2", hub_name or str(preset))
        vit.load_state_dict(hub.state_dict(), strict=True)
    elif weights is not None:
        load_dinov2_state_dict(vit, weights)
    else:
        warnings.warn("DINOv2 encoder with random weights (weights=None)", stacklevel=2)
    return DinoEncoder(vit, input_size)


def _register_dino(name: str) -> None:
    def factory(weights: str | None = None, input_size: int = 224) -> DinoEncoder:
        return dino_encoder(name, weights, input_size, hub_name=name)

    register_encoder(name)(factory)


for _name in VIT_PRESETS:
    _register_dino(_name)


@register_encoder("dinov2_custom")
def dinov2_custom(
    weights: str | None = None,
    input_size: int = 224,
    embed_dim: int = 384,
    depth: int = 12,
    num_heads: int = 6,
    patch_size: int = 14,
    pretrain_size: int = 518,
    num_register_tokens: int = 0,
) -> DinoEncoder:
    """DINOv2 architecture of any size (tests use a tiny one written in DINOv2's format)."""
    cfg = ViTConfig(
        embed_dim, depth, num_heads, 4.0, patch_size, pretrain_size, num_register_tokens
    )
    return dino_encoder(cfg, weights, input_size)


# -- trainable in-project encoder --------------------------------------------------------------------
class ConvEncoder(PatchEncoder):
    """Small CNN: ``B×3×H×W`` -> ``B×(H/s · W/s)×D`` with ``s = 2**downsample`` (3: 8×8 grid for
    64×64 images). Trainable; pair it with :class:`AntiCollapse`."""

    trainable = True

    def __init__(self, embed_dim: int = 64, channels: int = 32, downsample: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(downsample):
            c_out = channels * 2 ** min(i, 2)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.GroupNorm(8, c_out), nn.GELU()]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, embed_dim, 3, 1, 1))
        self.net = nn.Sequential(*layers)
        self.embed_dim = embed_dim
        self.stride = 2**downsample

    def grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size[0] // self.stride, image_size[1] // self.stride

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2 - 1).flatten(2).transpose(1, 2)


@register_encoder("conv")
def conv_encoder(embed_dim: int = 64, channels: int = 32, downsample: int = 3) -> ConvEncoder:
    return ConvEncoder(embed_dim, channels, downsample)


# -- anti-collapse guard ------------------------------------------------------------------------------
class RepresentationCollapseError(RuntimeError):
    """The trainable encoder's outputs have (nearly) constant features."""


@dataclass(frozen=True)
class AntiCollapse:
    """VICReg (Bardes et al. 2022) variance + covariance regularisers and a collapse monitor for
    a jointly trained encoder.

    variance: weight of ``mean_d relu(gamma - std_d)``; covariance: weight of the squared
    off-diagonal covariance / D; min_std: the monitor fires when the mean per-feature std drops
    below it; on_collapse: ``"error"`` raises, ``"warn"`` warns.

    per_position: for patch tokens (``…×N×D``), measure each feature's spread per token position
    over the samples only. Pooled over positions (the default, as for image-level features), a
    feature that only says *which patch this is* has the full spread while ignoring the image:
    an encoder can pass the variance term and the monitor and still not see the arm move. A
    residual DINO-WM trained with the encoder did this on the planar arm (``wm-plan probe``: the
    tokens of a frame 15 steps later differ from the first by an MSE of 0.0004 instead of 0.028).
    """

    variance: float = 1.0
    covariance: float = 0.04
    gamma: float = 1.0
    min_std: float = 0.01
    on_collapse: Literal["error", "warn"] = "error"
    per_position: bool = False

    def __post_init__(self) -> None:
        if min(self.variance, self.covariance, self.min_std) < 0 or self.gamma <= 0:
            raise ValueError(f"invalid anti-collapse settings {self}")
        if self.on_collapse not in ("error", "warn"):
            raise ValueError(f"on_collapse must be 'error' or 'warn', got {self.on_collapse!r}")

    def __call__(self, z: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``z`` …×D features (samples = every leading index; with ``per_position``, ``…×N×D``
        and samples = the indices before ``N``) -> (regulariser, metrics)."""
        if self.per_position:
            if z.dim() < 3:
                raise ValueError(f"per_position needs …×N×D tokens, got {tuple(z.shape)}")
            x = z.reshape(-1, *z.shape[-2:]).float()  # S×N×D
            x = (x - x.mean(0)).flatten(0, 1)  # centred per position: only the samples' spread
        else:
            x = z.reshape(-1, z.shape[-1]).float()
            x = x - x.mean(0)
        std = (x.var(0) + 1e-4).sqrt()
        var_loss = F.relu(self.gamma - std).mean()
        cov = x.T @ x / max(x.shape[0] - 1, 1)
        off = cov - torch.diag(torch.diag(cov))
        cov_loss = off.pow(2).sum() / x.shape[1]
        raw_std = x.detach().std(0).mean().item()  # the hinge's eps would hide a collapse
        self.check(raw_std)
        loss = self.variance * var_loss + self.covariance * cov_loss
        return loss, {
            "enc_std": raw_std,
            "vic_var": var_loss.item(),
            "vic_cov": cov_loss.item(),
        }

    def check(self, mean_std: float) -> None:
        """Raise or warn when the mean feature std is below ``min_std`` (a collapsed encoder)."""
        if mean_std < self.min_std:
            msg = (
                f"encoder representation collapsed: mean feature std {mean_std:.2e} < "
                f"{self.min_std:.2e}; raise anti_collapse.variance or lower the learning rate"
            )
            if self.on_collapse == "error":
                raise RepresentationCollapseError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

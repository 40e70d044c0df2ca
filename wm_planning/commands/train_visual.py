"""``wm-plan train-visual``: fit a visual world model (DINO-WM, visual foresight) to a dataset.

    wm-plan train-visual model=dino_wm data=data/planar64 steps=2000 out=runs/dino.pt \\
        [batch_size=32] [lr=3e-4] [seed=0] [device=cpu] [model_options.<option>=value ...]

``model=<name>`` reads ``configs/model/<name>.yaml`` (key ``name`` = the registered model,
every other key an option of its ``Config``); ``model_options.<option>=`` overrides one option. The
checkpoint holds the model name, options, :class:`ModelSpec` and weights (:func:`load_checkpoint`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wm_planning.cli import command


@dataclass(frozen=True)
class TrainVisualConfig:
    model: str
    data: str
    steps: int = 1000
    out: str = "runs/visual.pt"
    batch_size: int = 32
    seq_len: int | None = None  # default: what the model needs (history·frameskip, or 8)
    lr: float = 3e-4
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    log_every: int = 50
    checkpoint_every: int = 500  # also written at the end; a killed run keeps its latest
    warmup: int = 100  # linear LR warm-up steps, then cosine decay to lr/10 at ``steps``
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.log_every, self.checkpoint_every) < 1:
            raise ValueError("steps, batch_size, log_every, checkpoint_every must be >= 1")
        if self.lr <= 0 or self.warmup < 0:
            raise ValueError(f"lr must be > 0 and warmup >= 0, got {self.lr}, {self.warmup}")
        if self.seq_len is not None and self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")


def _import_models() -> None:
    # registers "dino_wm" and "visual_foresight" with wm_planning.models.registry
    from wm_planning.models import dino_wm, visual_foresight  # noqa: F401


def save_checkpoint(path: Path, name: str, options: dict[str, Any], model: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "name": name,
            "options": options,
            "spec": model.spec.to_dict(),
            "state_dict": model.state_dict(),
        },
        path,
    )


def load_checkpoint(path: str | Path, device: str = "cpu") -> Any:
    """Rebuild a visual model from :func:`save_checkpoint`'s file (eval mode, on ``device``)."""
    from wm_planning.models.registry import ModelSpec, make_model

    _import_models()
    ck = torch.load(path, map_location=device, weights_only=False)
    spec = ck["spec"]
    model = make_model(
        ck["name"],
        ModelSpec(
            {k: tuple(v) for k, v in spec["obs_shapes"].items()},
            spec["action_dim"],
            spec["episode_length"],
        ),
        **ck["options"],
    )
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval()


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to 0.1 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def train(cfg: TrainVisualConfig, progress: bool = True) -> dict[str, float]:
    from tqdm import tqdm

    from wm_planning.config import load_group
    from wm_planning.data import Dataset, SequenceLoader
    from wm_planning.models.registry import ModelSpec, make_model
    from wm_planning.training.trainer import CSVLog

    _import_models()
    torch.manual_seed(cfg.seed)
    options = load_group("model", cfg.model)
    name = str(options.pop("name"))
    options.update(cfg.model_options)
    ds = Dataset(Path(cfg.data))
    env_spec = ds.meta["spec"]  # the EnvSpec as stored in meta.json
    spec = ModelSpec(
        {str(k): tuple(v) for k, v in env_spec["obs_shapes"].items()},
        len(env_spec["action_low"]),
        int(env_spec["episode_length"]),
    )
    model = make_model(name, spec, **options).to(cfg.device)
    fc = getattr(model.config, "frameskip", 1) * getattr(model.config, "history", 8)
    seq_len = cfg.seq_len or fc
    keys = [k for k in ("pixels", "proprio") if k in spec.obs_shapes]
    loader = SequenceLoader(ds, seq_len, cfg.batch_size, obs_keys=keys, device=cfg.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    out = Path(cfg.out)
    out.with_suffix(".csv").unlink(missing_ok=True)  # a fresh run starts a fresh curve
    log = CSVLog(out.with_suffix(".csv"))  # loss curve: mean metrics over each log_every steps
    window: dict[str, list[float]] = {}
    g = torch.Generator().manual_seed(cfg.seed)
    t0 = time.perf_counter()
    first: dict[str, float] = {}
    metrics: dict[str, float] = {}
    bar = tqdm(range(cfg.steps), disable=not progress, unit="step")
    for step in bar:
        loss, metrics = model.loss(loader.sample(g))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        first = first or dict(metrics)
        for k, v in metrics.items():
            window.setdefault(k, []).append(v)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            means = {k: sum(v) / len(v) for k, v in window.items()}
            window.clear()
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items() if "loss" in k})
            log.write({"step": step + 1, "seconds": round(time.perf_counter() - t0, 2),
                       "lr": opt.param_groups[0]["lr"], **means})  # fmt: skip
        if (step + 1) % cfg.checkpoint_every == 0:
            save_checkpoint(out, name, options, model)
    save_checkpoint(out, name, options, model)
    return {
        "first_loss": first["loss"],
        "final_loss": metrics["loss"],
        "seconds": time.perf_counter() - t0,
        "params": float(model.num_params()),
    }


def load_config(argv: list[str]) -> TrainVisualConfig:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.from_dotlist(argv), resolve=True)
    assert isinstance(raw, dict)
    opts = raw.pop("model_options", {}) or {}
    model = raw.get("model")
    if isinstance(model, dict):  # model.<option>=value overrides next to model=<name>
        raise ValueError("give model=<name> and model_options.<option>=value")
    known = set(TrainVisualConfig.__dataclass_fields__)
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise ValueError(f"unknown train-visual options {unknown}; known: {sorted(known)}")
    return TrainVisualConfig(**{str(k): v for k, v in raw.items()}, model_options=dict(opts))


@command("train-visual", help="train a visual world model (dino_wm, visual_foresight) on a dataset")
def main(argv: list[str]) -> int:
    if not argv or any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    cfg = load_config(argv)
    s = train(cfg)
    print(
        f"trained {cfg.model} ({s['params']:.0f} params) for {cfg.steps} steps in {s['seconds']:.0f} s: "
        f"loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}; checkpoint {cfg.out}"
    )
    return 0

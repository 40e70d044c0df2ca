"""``wm-plan train-visual``: fit a visual world model (DINO-WM, visual foresight) to a dataset.

    wm-plan train-visual model=dino_wm data=data/planar64 steps=2000 out=runs/dino.pt \\
        [batch_size=32] [lr=3e-4] [seed=0] [device=cpu] [model_options.<option>=value ...]
        [resume=true]   # continue out (weights, optimizer, LR schedule, RNG) up to steps
        [init_from=PATH]   # fine-tune: PATH's weights, a fresh optimizer and LR schedule

``model=<name>`` reads ``configs/model/<name>.yaml`` (key ``name`` = the registered model,
every other key an option of its ``Config``); ``model_options.<option>=`` overrides one option.

The checkpoint format (weights, options, env, config, training state for ``resume=true``
and the training actions' ``action_box``) is :mod:`wm_planning.training.visual_checkpoint`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wm_planning.cli import command
from wm_planning.training.visual_checkpoint import (
    _import_models,
    action_box,
    load_visual_checkpoint,
    save_checkpoint,
)


@dataclass(frozen=True)
class TrainVisualConfig:
    model: str
    data: str  # dataset directory, or several joined by commas (one env and layout)
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
    resume: bool = False  # continue ``out`` (weights, optimizer, schedule, RNG) up to ``steps``
    init_from: str | None = None  # start from this checkpoint's weights (fresh optimizer/schedule)
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if min(self.steps, self.batch_size, self.log_every, self.checkpoint_every) < 1:
            raise ValueError("steps, batch_size, log_every, checkpoint_every must be >= 1")
        if self.lr <= 0 or self.warmup < 0:
            raise ValueError(f"lr must be > 0 and warmup >= 0, got {self.lr}, {self.warmup}")
        if self.seq_len is not None and self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        if self.resume and self.init_from:
            raise ValueError("resume=true continues out; init_from starts a new run: pick one")


def data_dirs(data: str | Sequence[str]) -> list[Path]:
    """``data``: one dataset directory, several joined by commas, or a list of them."""
    parts = str(data).split(",") if isinstance(data, str) else [str(d) for d in data]
    dirs = [Path(p.strip()) for p in parts if p.strip()]
    if not dirs:
        raise ValueError("data= names no dataset directory")
    return dirs


def open_datasets(data: str | Sequence[str]) -> list[Any]:
    """The datasets of ``data`` (:func:`data_dirs`); several must come from the same env with the
    same observation and action layout, or a ``DatasetError`` names the one that differs."""
    from wm_planning.data import Dataset, DatasetError

    def layout(ds: Any) -> tuple[Any, ...]:
        spec = ds.meta["spec"]
        return (
            ds.meta.get("env"),
            spec.get("obs_shapes"),
            spec.get("action_low"),
            spec.get("action_high"),
        )

    datasets = [Dataset(d) for d in data_dirs(data)]
    first = datasets[0]
    for ds in datasets[1:]:
        if layout(ds) != layout(first):
            raise DatasetError(
                f"{ds.path} ({layout(ds)[0]}, {layout(ds)[1]}) does not match {first.path} "
                f"({layout(first)[0]}, {layout(first)[1]}): train on datasets of one env and layout"
            )
    return datasets


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from 1 to 0.1 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def train(cfg: TrainVisualConfig, progress: bool = True) -> dict[str, float]:
    from tqdm import tqdm

    from wm_planning.config import load_group
    from wm_planning.data import SequenceLoader
    from wm_planning.models.registry import ModelSpec, make_model
    from wm_planning.training.trainer import CSVLog

    _import_models()
    torch.manual_seed(cfg.seed)
    options = load_group("model", cfg.model)
    name = str(options.pop("name"))
    options.update(cfg.model_options)
    datasets = open_datasets(cfg.data)
    env_spec = datasets[0].meta["spec"]  # the EnvSpec as stored in meta.json
    env = datasets[0].meta.get("env")
    run_config = dataclasses.asdict(cfg)
    spec = ModelSpec(
        {str(k): tuple(v) for k, v in env_spec["obs_shapes"].items()},
        len(env_spec["action_low"]),
        int(env_spec["episode_length"]),
    )
    model = make_model(name, spec, **options).to(cfg.device)
    fc = getattr(model.config, "frameskip", 1) * getattr(model.config, "history", 8)
    seq_len = cfg.seq_len or fc
    keys = [k for k in ("pixels", "proprio") if k in spec.obs_shapes]
    episodes = [e for ds in datasets for e in ds]
    box = action_box([e.actions for e in episodes])
    loader = SequenceLoader(episodes, seq_len, cfg.batch_size, obs_keys=keys, device=cfg.device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    out = Path(cfg.out)
    g = torch.Generator().manual_seed(cfg.seed)
    start, elapsed = 0, 0.0
    if cfg.resume:
        start, elapsed = _resume(cfg, out, name, options, model, opt, sched, g)
        CSVLog(out.with_suffix(".csv")).drop_after(start)  # rows logged after the checkpoint
    else:
        if cfg.init_from:
            _init_from(cfg.init_from, name, model)
        out.with_suffix(".csv").unlink(missing_ok=True)  # a fresh run starts a fresh curve
    log = CSVLog(out.with_suffix(".csv"))  # loss curve: mean metrics over each log_every steps
    window: dict[str, list[float]] = {}
    t0 = time.perf_counter() - elapsed
    first: dict[str, float] = {}
    metrics: dict[str, float] = {}

    def save(step: int) -> None:
        state = {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": {"loader": g.get_state(), "torch": torch.get_rng_state()},
        }
        save_checkpoint(out, name, options, model, env=env, config=run_config, step=step,
                        seconds=time.perf_counter() - t0, train_state=state,
                        action_box=box)  # fmt: skip

    bar = tqdm(range(start, cfg.steps), disable=not progress, unit="step", initial=start,
               total=cfg.steps)  # fmt: skip
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
            save(step + 1)
    if start < cfg.steps:
        save(cfg.steps)
    return {
        "first_loss": first.get("loss", math.nan),
        "final_loss": metrics.get("loss", math.nan),
        "seconds": time.perf_counter() - t0,
        "params": float(model.num_params()),
        "start_step": float(start),
    }


def _init_from(path: str, name: str, model: Any) -> None:
    """Fine-tuning: the weights of ``path`` (the same model with the same options, except those
    that only weigh the loss: the config's ``loss_fields``), nothing else (a fresh optimizer, LR
    schedule and step count)."""
    from wm_planning.training.checkpoint import CheckpointError

    ck = load_visual_checkpoint(path)
    loss_only = set(getattr(type(model.config), "loss_fields", ()))
    old, new = (
        {k: v for k, v in dataclasses.asdict(c).items() if k not in loss_only}
        for c in (ck.model.config, model.config)
    )
    if ck.name != name or old != new:
        diff = sorted(k for k in new if old.get(k) != new[k])
        raise CheckpointError(
            f"init_from={path} holds a {ck.name!r} model with other options ({diff or 'model'})"
        )
    model.load_state_dict(ck.model.state_dict())


def _resume(
    cfg: TrainVisualConfig,
    out: Path,
    name: str,
    options: dict[str, Any],
    model: Any,
    opt: torch.optim.Optimizer,
    sched: Any,
    g: torch.Generator,
) -> tuple[int, float]:
    """Load ``out`` into the fresh ``model``/``opt``/``sched``/``g``; returns (step, seconds).
    The model, its options and the data must be the run's own."""
    from wm_planning.training.checkpoint import CheckpointError, to_plain

    if not out.is_file():
        raise CheckpointError(f"resume=true but {out} does not exist: nothing to resume")
    ck = load_visual_checkpoint(out)
    if ck.train_state is None:
        raise CheckpointError(
            f"{out} has no optimizer state (stripped, or written before resume existed)"
        )
    same = {
        "model": (ck.name, name),
        "model options": (to_plain(ck.config.get("model_options")), to_plain(cfg.model_options)),
        "data": (ck.config.get("data"), cfg.data),
        "batch_size": (ck.config.get("batch_size"), cfg.batch_size),
        "seq_len": (ck.config.get("seq_len"), cfg.seq_len),
        "lr": (ck.config.get("lr"), cfg.lr),
        "warmup": (ck.config.get("warmup"), cfg.warmup),
    }
    diff = {k: v for k, v in same.items() if v[0] != v[1]}
    if diff:
        raise CheckpointError(
            f"resume=true: {out} was trained with other settings "
            + ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in diff.items())
        )
    model.load_state_dict(ck.model.state_dict())
    opt.load_state_dict(ck.train_state["optimizer"])
    sched.load_state_dict(ck.train_state["scheduler"])
    # The schedule runs to this run's `steps`, which may be more than the first sitting's: the
    # learning rate is recomputed for the step reached instead of kept from the old schedule.
    for group, base in zip(opt.param_groups, sched.base_lrs, strict=True):
        group["lr"] = base * lr_factor(ck.step, cfg.warmup, cfg.steps)
    g.set_state(ck.train_state["rng"]["loader"])
    torch.set_rng_state(ck.train_state["rng"]["torch"])
    return ck.step, ck.seconds


def load_config(argv: list[str]) -> TrainVisualConfig:
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.from_dotlist(argv), resolve=True)
    assert isinstance(raw, dict)
    opts = raw.pop("model_options", {}) or {}
    model = raw.get("model")
    if isinstance(model, dict):  # model.<option>=value overrides next to model=<name>
        raise ValueError("give model=<name> and model_options.<option>=value")
    if isinstance(raw.get("data"), list):  # data=[dir_a,dir_b]: the same as data=dir_a,dir_b
        raw["data"] = ",".join(str(d) for d in raw["data"])
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
    resumed = f" (resumed at step {s['start_step']:.0f})" if cfg.resume else ""
    print(
        f"trained {cfg.model} ({s['params']:.0f} params) for {cfg.steps} steps{resumed} in "
        f"{s['seconds']:.0f} s: loss {s['first_loss']:.4f} -> {s['final_loss']:.4f}; "
        f"checkpoint {cfg.out}"
    )
    return 0

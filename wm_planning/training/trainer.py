"""Training loops: offline (from a collected dataset) and online (seed steps with random actions,
then plan-and-act with exploration noise, ``updates_per_step`` gradient updates per env step).

A run directory holds ``checkpoint.pt`` (latest; ``resume=true`` continues from it),
``train.csv`` (losses), ``episodes.csv`` (online episodes: return, success, plan time),
``config.yaml`` and, online, ``episodes_NNN/`` (the replay data in the dataset format, one part
per (re)start, reloaded on resume; checkpoints are written at episode ends) and, with
``tensorboard=true``, ``tb/`` (the same rows as TensorBoard scalars: ``tensorboard --logdir runs``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wm_planning.data import Dataset, DatasetWriter
from wm_planning.models.registry import ModelSpec, get_model_class, model_from_config

from .agent import Agent, make_planner, run_episode
from .buffer import ReplayBuffer
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint

#: per-family training defaults (tdmpc2 config.yaml; PlaNet paper), used where the config says null
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "tdmpc2": {"lr": 3e-4, "batch_size": 256, "seq_len": 3, "explore_std": 0.0, "adam_eps": 1e-8},
    "planet": {"lr": 1e-3, "batch_size": 50, "seq_len": 50, "explore_std": 0.3, "adam_eps": 1e-4},
}


@dataclass(frozen=True)
class TrainConfig:
    """``configs/train.yaml``. ``null`` fields take the model family's default
    (:data:`TRAIN_DEFAULTS`; seed_steps: tdmpc2's ``max(1000, 5·episode_length)``)."""

    model: dict[str, Any]
    env: str = "planar-reach"
    pixels: bool = False
    image_size: int = 64
    action_repeat: int | None = None
    data: str | None = None
    steps: int = 100_000
    seed_steps: int | None = None
    pretrain_updates: int | None = None
    updates_per_step: float = 1.0
    batch_size: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    adam_eps: float | None = None
    explore_std: float | None = None
    planner: str | None = None
    planner_options: dict[str, Any] | None = None
    num_prior: int = 24
    replan_every: int = 1
    buffer_capacity: int = 1_000_000
    log_every: int = 100
    checkpoint_every: int = 5000
    out: str = "runs/train"
    resume: bool = False
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    progress: bool = True
    tensorboard: bool = True
    compile: bool = False

    def __post_init__(self) -> None:
        if "name" not in self.model:
            raise ValueError("model config needs a 'name'")
        get_model_class(str(self.model["name"]))
        if self.steps < 1 or self.log_every < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, log_every and checkpoint_every must be >= 1")
        if self.updates_per_step < 0 or self.num_prior < 0 or self.seed < 0:
            raise ValueError("updates_per_step, num_prior and seed must be >= 0")
        for k in ("batch_size", "seq_len", "seed_steps", "pretrain_updates"):
            v = getattr(self, k)
            if v is not None and v < (0 if k in ("seed_steps", "pretrain_updates") else 1):
                raise ValueError(f"{k} must be positive, got {v}")

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    def resolved(self, key: str) -> Any:
        """Field ``key`` or, when null, the model family's default."""
        v = getattr(self, key)
        return TRAIN_DEFAULTS[self.model_name][key] if v is None else v

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ValueError(f"unknown train options {unknown}; known: {sorted(known)}")
        return cls(**{str(k): v for k, v in raw.items()})


class CSVLog:
    """Appends rows to a CSV file; the header is the first row's keys. With ``tb`` (a TensorBoard
    ``SummaryWriter``) every numeric column is also a scalar ``<tag>/<column>`` at ``row[x]``."""

    def __init__(self, path: Path, tb: Any = None, tag: str = "", x: str = "step") -> None:
        self.path = path
        self.tb, self.tag, self.x = tb, tag, x
        self.fields: list[str] | None = None
        if path.is_file() and path.stat().st_size:
            with path.open() as f:
                self.fields = next(csv.reader(f))

    def drop_after(self, limit: float) -> int:
        """Remove the rows whose ``x`` column exceeds ``limit`` (a resumed run repeats what a
        run killed after its last checkpoint had logged); returns how many were removed."""
        if self.fields is None or self.x not in self.fields:
            return 0
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if float(r[self.x]) <= limit]
        if len(keep) != len(rows):
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(keep)
        return len(rows) - len(keep)

    def write(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        if self.fields is None:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != self.x and isinstance(v, int | float) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{self.tag}/{k}", v, global_step=int(row[self.x]))


def make_env(name: str, pixels: bool, image_size: int, action_repeat: int | None = None) -> Any:
    """Env ``name`` with its ``configs/task`` preset (as ``wm-plan collect`` builds it);
    ``action_repeat`` overrides the preset's (e.g. TD-MPC2's 2 on DMControl, PlaNet's 4)."""
    from wm_planning import envs
    from wm_planning.commands.collect import task_preset

    kwargs = task_preset(name)
    kwargs.update(pixels=pixels, image_size=(image_size, image_size))
    if action_repeat is not None:
        kwargs["action_repeat"] = int(action_repeat)
    return envs.make(name, **kwargs)


def require_compiler(device: torch.device) -> None:
    """``torch.compile`` on a CPU builds C++ kernels: fail early, with the fix, without one."""
    if device.type == "cpu" and not any(
        shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")
    ):
        raise RuntimeError(
            "compile=true on a CPU needs a C++ compiler (e.g. `apt-get install g++`); "
            "or train with compile=false"
        )


class Trainer:
    """Builds (or resumes) the model and optimizer; :meth:`update` is one gradient step."""

    def __init__(self, cfg: TrainConfig, spec: ModelSpec, config_dict: dict[str, Any]) -> None:
        self.cfg, self.config_dict = cfg, config_dict
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(cfg.device)
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # weight init, dropout, augmentation
        self.model = model_from_config(cfg.model, spec).to(self.device).train()
        # The loss as called by update(): torch.compile fuses its element-wise work (one
        # compilation at the first update, then the same shapes every step).
        self._loss = self.model.loss
        if cfg.compile:
            require_compiler(self.device)
            import torch._inductor.config as inductor_config

            # draw random numbers exactly as eager mode does (same seeds, same run)
            inductor_config.fallback_random = True
            self._loss = torch.compile(self.model.loss)
        groups = self.model.optim_groups(float(cfg.resolved("lr")))
        self.clips = [g.get("clip") for g in groups]
        self.optimizer = torch.optim.Adam(
            [{"params": g["params"], "lr": g["lr"]} for g in groups],
            eps=float(cfg.resolved("adam_eps")),
        )
        self.generator = torch.Generator().manual_seed(cfg.seed)  # batch sampling, actions
        self.step = self.updates = 0
        self.ckpt_path = self.out / "checkpoint.pt"
        if cfg.resume:
            self._resume()
        self.tb: Any = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tb"))
        self.train_log = CSVLog(self.out / "train.csv", self.tb, "train", x="updates")
        self.episode_log = CSVLog(self.out / "episodes.csv", self.tb, "episode", x="step")
        if cfg.resume:  # rows logged after the checkpoint would be logged twice
            self.train_log.drop_after(self.updates)
            if cfg.data is not None:  # online runs first count the data they recorded
                self.episode_log.drop_after(self.step)
        self._metrics: dict[str, list[float]] = {}
        self._t0 = time.perf_counter()

    def _resume(self) -> None:
        ck = load_checkpoint(self.ckpt_path, expect_model=self.cfg.model_name)
        try:
            self.model.load_state_dict(ck.weights)
            if ck.optimizer is not None:
                self.optimizer.load_state_dict(ck.optimizer)
        except (RuntimeError, ValueError) as e:
            raise CheckpointError(f"cannot resume from {self.ckpt_path}: {e}") from e
        if "generator" in ck.rng:
            self.generator.set_state(ck.rng["generator"])
        if "torch" in ck.rng:
            torch.set_rng_state(ck.rng["torch"])
        self.step, self.updates = ck.step, ck.updates

    def count_recorded(self, recorded: int) -> int:
        """Resuming online: ``recorded`` env steps are in the run's episode parts. A run stopped
        between checkpoints recorded episodes after its last one; they stay in the replay
        buffer, so they count as collected: the step counter becomes the data's (the updates
        made after the checkpoint are lost, and ``updates`` says so) and their ``episodes.csv``
        rows stay. Returns the env steps added to the checkpoint's count."""
        extra = max(0, int(recorded) - self.step)
        self.step += extra
        self.episode_log.drop_after(self.step)
        return extra

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()

    def save(self) -> Path:
        if self.tb is not None:
            self.tb.flush()
        rng = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        return save_checkpoint(
            self.ckpt_path, self.model, config=self.config_dict, step=self.step,
            updates=self.updates, optimizer=self.optimizer, rng=rng,
        )  # fmt: skip

    def update(self, batch: Mapping[str, Tensor]) -> dict[str, float]:
        """One gradient step on ``batch``; each parameter group is clipped to its own norm."""
        self.model.train()
        loss, metrics = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at update {self.updates}: {metrics}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group, clip in zip(self.optimizer.param_groups, self.clips, strict=True):
            if clip is not None:
                norm = torch.nn.utils.clip_grad_norm_(group["params"], float(clip))
                metrics.setdefault("grad_norm", float(norm))
        self.optimizer.step()
        self.model.after_update()
        self.updates += 1
        metrics["loss"] = float(loss.detach())
        for k, v in metrics.items():
            self._metrics.setdefault(k, []).append(v)
        if self.updates % self.cfg.log_every == 0:
            self.flush_metrics()
        return metrics

    def flush_metrics(self) -> None:
        if not self._metrics:
            return
        row: dict[str, Any] = {
            "updates": self.updates,
            "step": self.step,
            "wall_s": round(time.perf_counter() - self._t0, 2),
        }
        row |= {k: float(np.mean(v)) for k, v in self._metrics.items()}
        self.train_log.write(row)
        self._metrics = {}

    def fit_obs_stats(self, buffer: ReplayBuffer) -> None:
        """Normalise state observations with the data's statistics (once, at the start)."""
        if not self.model.pixels and not self.cfg.resume:
            mean, std = buffer.obs_stats(self.model.obs_key)
            self.model.set_obs_stats(mean.to(self.device), std.to(self.device))

    def sample(self, buffer: ReplayBuffer) -> dict[str, Tensor]:
        return buffer.sample(
            int(self.cfg.resolved("batch_size")), int(self.cfg.resolved("seq_len")),
            self.generator, self.device,
        )  # fmt: skip


def train_offline(cfg: TrainConfig, config_dict: dict[str, Any]) -> Trainer:
    """``cfg.steps`` gradient updates on the dataset at ``cfg.data``."""
    from tqdm import tqdm

    assert cfg.data is not None
    ds = Dataset(cfg.data)
    shapes = {k: tuple(v) for k, v in ds.meta["spec"]["obs_shapes"].items()}
    episode_length = int(ds.meta["spec"].get("episode_length", 1000))
    spec = ModelSpec(shapes, len(ds.meta["spec"]["action_low"]), episode_length)
    trainer = Trainer(cfg, spec, config_dict)
    buffer = ReplayBuffer.from_dataset(ds, [trainer.model.obs_key], cfg.buffer_capacity)
    trainer.fit_obs_stats(buffer)
    bar = tqdm(total=cfg.steps, initial=trainer.updates, disable=not cfg.progress, unit="upd")
    while trainer.updates < cfg.steps:
        m = trainer.update(trainer.sample(buffer))
        trainer.step = trainer.updates
        bar.update(1)
        bar.set_postfix(loss=f"{m['loss']:.3f}")
        if trainer.updates % cfg.checkpoint_every == 0:
            trainer.save()
    bar.close()
    trainer.flush_metrics()
    trainer.save()
    trainer.close()
    return trainer


def train_online(cfg: TrainConfig, config_dict: dict[str, Any]) -> Trainer:
    """Interleave env steps and updates until ``cfg.steps`` env steps (see the module docstring)."""
    from tqdm import tqdm

    env = make_env(cfg.env, cfg.pixels, cfg.image_size, cfg.action_repeat)
    try:
        spec = ModelSpec(dict(env.spec.obs_shapes), env.spec.action_dim, env.spec.episode_length)
        trainer = Trainer(cfg, spec, config_dict)
        model = trainer.model
        buffer = ReplayBuffer([model.obs_key], cfg.buffer_capacity)
        # Online episodes are written in the dataset format; each (re)start appends a new part
        # (DatasetWriter creates datasets, it does not append) and resuming reloads all parts.
        parts = sorted(p for p in trainer.out.glob("episodes_*") if (p / "meta.json").is_file())
        recorded_episodes = 0
        if cfg.resume:
            recorded = 0
            for part in parts:
                for ep in Dataset(part):
                    buffer.add(ep)
                    recorded += len(ep)
                    recorded_episodes += 1
            extra = trainer.count_recorded(recorded)
            if extra:
                print(
                    f"resume: {extra} env steps were recorded after the checkpoint; they stay in "
                    f"the replay buffer and count as collected (now {trainer.step} steps, "
                    f"{trainer.updates} updates)",
                    flush=True,
                )
        else:
            parts = []
        writer = DatasetWriter(
            trainer.out / f"episodes_{len(parts):03d}", cfg.env, env.spec, config=config_dict,
            overwrite=True,
        )  # fmt: skip
        seed_steps = cfg.seed_steps
        if seed_steps is None:
            seed_steps = max(1000, 5 * env.spec.episode_length)
        pretrain = seed_steps if cfg.pretrain_updates is None else cfg.pretrain_updates
        planner = make_planner(
            model, env.spec.action_low, env.spec.action_high, cfg.planner, cfg.planner_options
        )
        agent = Agent(
            model, planner, generator=trainer.generator, replan_every=cfg.replan_every,
            num_prior=cfg.num_prior, explore_std=float(cfg.resolved("explore_std")),
        )  # fmt: skip
        low = torch.tensor(env.spec.action_low)
        high = torch.tensor(env.spec.action_high)
        debt = 0.0  # fractional updates owed (updates_per_step may be < 1)

        def random_act(obs: Any) -> np.ndarray:
            u = torch.rand(low.shape, generator=trainer.generator)
            return (low + (high - low) * u).numpy()

        def planned_act(obs: Any) -> np.ndarray:
            model.eval()
            return agent.act(obs)

        bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not cfg.progress, unit="step")

        pretrained = trainer.updates > 0

        def maybe_pretrain() -> bool:
            """Once seed_steps are in the buffer: fit obs statistics, run the pretraining updates."""
            nonlocal pretrained
            if not pretrained and trainer.step >= seed_steps and buffer.num_episodes:
                trainer.fit_obs_stats(buffer)
                for _ in range(pretrain):
                    trainer.update(trainer.sample(buffer))
                pretrained = True
                return True
            return False

        def on_step() -> None:
            nonlocal debt
            trainer.step += 1
            bar.update(1)
            if not maybe_pretrain() and pretrained:
                debt += cfg.updates_per_step
                while debt >= 1:
                    trainer.update(trainer.sample(buffer))
                    debt -= 1

        # episodes recorded so far (the buffer may have evicted some at its capacity)
        episode, last_saved = recorded_episodes, trainer.step
        while trainer.step < cfg.steps:
            acting = planned_act if trainer.step >= seed_steps else random_act
            agent.reset()
            stats = run_episode(
                env, cfg.seed * 1_000_003 + episode, acting, agent=agent, keep=True, on_step=on_step
            )
            assert stats.episode is not None
            buffer.add(stats.episode)
            writer.add(stats.episode)
            maybe_pretrain()
            plan_ms = 1000 * float(np.mean(stats.plan_times_s)) if stats.plan_times_s else math.nan
            trainer.episode_log.write(
                {"episode": episode, "step": trainer.step, "updates": trainer.updates,
                 "return": stats.ret, "success": int(stats.success), "length": stats.length,
                 "plan_ms": plan_ms, "random": int(acting is random_act),
                 "wall_s": round(time.perf_counter() - trainer._t0, 2)}
            )  # fmt: skip
            bar.set_postfix(ret=f"{stats.ret:.1f}", ok=int(stats.success))
            episode += 1
            # checkpoints at episode ends; a resume counts the episodes recorded after the last
            # one (count_recorded), so the step axis is always the data's
            if trainer.step // cfg.checkpoint_every > last_saved // cfg.checkpoint_every:
                trainer.save()
                last_saved = trainer.step
        bar.close()
        trainer.flush_metrics()
        trainer.save()
        trainer.close()
    finally:
        env.close()
    return trainer

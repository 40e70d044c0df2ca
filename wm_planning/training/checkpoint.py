"""Checkpoints: one ``torch.save`` of a plain dict, read back with ``weights_only=True``.

Keys: ``format`` (``wm-planning-checkpoint``), ``version`` (:data:`CHECKPOINT_VERSION`),
``model`` (registered name), ``model_options`` (its config), ``spec`` (:class:`ModelSpec` as a
dict), ``weights`` (``state_dict``; includes the obs-normalisation buffers), ``data_stats``
(the same statistics in readable form), ``weights_sha256`` (checked on load), ``config`` (the full resolved training config),
``step`` / ``updates``, and for resuming ``optimizer`` and ``rng`` (torch generator states).
Only tensors, numbers, strings, lists and dicts are stored, so ``weights_only`` loading works
and a checkpoint never runs code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wm_planning.models.registry import LearnedModel, ModelSpec, make_model

CHECKPOINT_FORMAT = "wm-planning-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, of another format version or of another model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint (see the module docstring for the fields)."""

    model: str
    model_options: dict[str, Any]
    spec: ModelSpec
    weights: dict[str, Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    data_stats: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    updates: int = 0
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Tensor] = field(default_factory=dict)

    def build_model(self, device: str | torch.device = "cpu") -> LearnedModel:
        """The model with its trained weights, in eval mode, on ``device``."""
        model = make_model(self.model, self.spec, **self.model_options)
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint weights do not fit model {self.model!r} with its stored options: {e}"
            ) from e
        return model.to(device).eval()

    def planner(
        self, name: str | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """The planner this model plans with: ``configs/planner/<name>`` and the options over it,
        each the given override, else the training run's, else the model family's default
        planner with no options."""
        from wm_planning.models.registry import get_model_class

        chosen = name or self.config.get("planner") or get_model_class(self.model).default_planner
        opts = self.config.get("planner_options") or {} if options is None else options
        return str(chosen), dict(opts)


def weights_digest(weights: dict[str, Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of every tensor: flipped bytes inside tensor
    data load without any error from ``torch.load``, so the checkpoint carries this digest."""
    h = hashlib.sha256()
    for k in sorted(weights):
        t = weights[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def to_plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_plain(v) for v in x]
    return x


def save_checkpoint(
    path: str | Path,
    model: LearnedModel,
    *,
    config: dict[str, Any] | None = None,
    step: int = 0,
    updates: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, Tensor] | None = None,
) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    data = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model.name,
        "model_options": to_plain(dataclasses.asdict(model.config)),
        "spec": model.spec.to_dict(),
        "weights": weights,
        "weights_sha256": weights_digest(weights),
        "data_stats": {
            "obs_key": model.obs_key,
            "obs_mean": model.obs_mean.cpu().tolist(),
            "obs_std": model.obs_std.cpu().tolist(),
        },
        "config": to_plain(config or {}),
        "step": int(step),
        "updates": int(updates),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "rng": dict(rng or {}),
    }
    return write_atomic(data, path)


def write_atomic(data: dict[str, Any], path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def strip_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint without what only resuming needs (optimizer moments, RNG states), for
    shipping: the model, its options, data statistics and config stay, so plans are unchanged.
    ``src`` is validated on the way (checksum, version)."""
    ck = load_checkpoint(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": ck.model,
        "model_options": ck.model_options,
        "spec": ck.spec.to_dict(),
        "weights": ck.weights,
        "weights_sha256": weights_digest(ck.weights),
        "data_stats": ck.data_stats,
        "config": ck.config,
        "step": ck.step,
        "updates": ck.updates,
        "optimizer": None,
        "rng": {},
    }
    return write_atomic(data, dst)


def read_checkpoint_file(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; a missing or unreadable file (truncated,
    not a checkpoint, pickled code) raises :class:`CheckpointError` naming ``what`` and ``path``."""
    if not path.is_file():
        raise CheckpointError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
    ) as e:
        raise CheckpointError(f"{what} {path} is corrupted or not a checkpoint: {e}") from e


def load_checkpoint(path: str | Path, expect_model: str | None = None) -> Checkpoint:
    """Read and validate a checkpoint; ``expect_model`` rejects one of another model family."""
    path = Path(path)
    data = read_checkpoint_file(path)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} file")
    if data.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {data.get('version')} but this code reads version "
            f"{CHECKPOINT_VERSION}; retrain or use a matching wm-planning"
        )
    if expect_model is not None and data.get("model") != expect_model:
        raise CheckpointError(
            f"{path} holds a {data.get('model')!r} model, expected {expect_model!r}"
        )
    weights = data.get("weights")
    if not isinstance(weights, dict) or data.get("weights_sha256") != weights_digest(weights):
        raise CheckpointError(f"checkpoint {path} is corrupted: weights checksum mismatch")
    try:
        spec = data["spec"]
        return Checkpoint(
            model=str(data["model"]),
            model_options=dict(data["model_options"]),
            spec=ModelSpec(
                obs_shapes={k: tuple(v) for k, v in spec["obs_shapes"].items()},
                action_dim=int(spec["action_dim"]),
                episode_length=int(spec["episode_length"]),
            ),
            weights=dict(data["weights"]),
            config=dict(data.get("config") or {}),
            data_stats=dict(data.get("data_stats") or {}),
            step=int(data.get("step", 0)),
            updates=int(data.get("updates", 0)),
            optimizer=data.get("optimizer"),
            rng=dict(data.get("rng") or {}),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is missing or has malformed fields: {e}") from e

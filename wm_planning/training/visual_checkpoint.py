"""Visual world-model checkpoints (DINO-WM, visual foresight), as ``wm-plan train-visual`` writes
them and goal-image planning (``wm-plan goal``, the ROS ``goal_image`` model) reads them.

The file is one ``torch.save`` of plain data, read back with ``weights_only=True``
(:func:`load_visual_checkpoint`): ``format`` (:data:`VISUAL_FORMAT`), ``version``, ``name`` (the
registered model), ``options``, ``spec`` (:class:`ModelSpec`), ``state_dict``, ``weights_sha256``
(checked on load), ``env`` (the dataset's env, which gives a deployment its robot, camera and
proprioception layout), ``config`` (the training command's options, the dataset path among them),
``step``, ``seconds``, ``train_state`` (optimizer, scheduler and RNG, for ``resume=true``) and
``action_box`` (the per-dimension 0.5 %/99.5 % quantiles of the training actions: the actions the
model has seen, which goal-image planning keeps to; :func:`action_box`, :func:`planning_box`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def _import_models() -> None:
    # registers "dino_wm" and "visual_foresight" with wm_planning.models.registry
    from wm_planning.models import dino_wm, visual_foresight  # noqa: F401


VISUAL_FORMAT = "wm-planning-visual-checkpoint"
VISUAL_VERSION = 1
ACTION_QUANTILE = 0.005  # action_box: the central 99 % of each action dimension


def action_box(actions: Sequence[np.ndarray], q: float = ACTION_QUANTILE) -> dict[str, Any]:
    """Per-dimension ``q`` / ``1 - q`` quantiles of the episodes' ``T×A`` action arrays (``low``,
    ``high``, each ``A`` floats). A model learns the dynamics of the actions in its data only: a scripted
    pusher's joint steps are a tenth of the env's box, and a planner sampling the whole box asks
    the model about motions it has never seen (DINO-WM's reference code, too, plans in actions
    normalised by the dataset's statistics)."""
    acts = np.concatenate([np.asarray(a, dtype=np.float64) for a in actions])
    if acts.ndim != 2 or not len(acts):
        raise ValueError("action_box needs episodes with T×A actions")
    low, high = np.quantile(acts, q, axis=0), np.quantile(acts, 1 - q, axis=0)
    high = np.maximum(high, low + 1e-6)  # a constant dimension still gets a (thin) box
    return {"low": low.tolist(), "high": high.tolist(), "quantile": float(q)}


@dataclass
class VisualCheckpoint:
    """A loaded visual checkpoint: the model (eval mode) and where it was trained.
    ``env`` is None for files written before checkpoints recorded it."""

    model: Any
    name: str
    env: str | None
    config: dict[str, Any]
    step: int = 0  # optimisation steps done
    seconds: float = 0.0  # training wall time so far
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, rng (to resume)
    options: dict[str, Any] = field(default_factory=dict)  # the model options as saved
    # the training actions' box (:func:`action_box`); None for files written before it existed
    action_box: dict[str, Any] | None = None


def save_checkpoint(
    path: Path,
    name: str,
    options: dict[str, Any],
    model: Any,
    *,
    env: str | None = None,
    config: dict[str, Any] | None = None,
    step: int = 0,
    seconds: float = 0.0,
    train_state: dict[str, Any] | None = None,
    action_box: dict[str, Any] | None = None,
) -> None:
    from wm_planning.training.checkpoint import to_plain, weights_digest, write_atomic

    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    data = {
        "format": VISUAL_FORMAT,
        "version": VISUAL_VERSION,
        "name": name,
        "options": to_plain(options),
        "spec": model.spec.to_dict(),
        "state_dict": weights,
        "weights_sha256": weights_digest(weights),
        "env": env,
        "config": to_plain(config or {}),
        "step": int(step),
        "seconds": float(seconds),
        "train_state": train_state,
        "action_box": to_plain(action_box) if action_box is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(data, path)  # a run killed while saving keeps its previous checkpoint


def strip_visual_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a visual checkpoint without its optimizer/scheduler/RNG state (``resume`` needs it,
    planning does not); ``src`` is validated on the way (format, checksum, weights)."""
    ck = load_visual_checkpoint(src)
    dst = Path(dst)
    save_checkpoint(dst, ck.name, ck.options, ck.model, env=ck.env, config=ck.config,
                    step=ck.step, seconds=ck.seconds, action_box=ck.action_box)  # fmt: skip
    return dst


def load_visual_checkpoint(path: str | Path, device: str = "cpu") -> VisualCheckpoint:
    """Read and validate a :func:`save_checkpoint` file; ``CheckpointError`` names what is wrong
    (missing, corrupted, another format or version, weights that do not fit the model)."""
    from wm_planning.models.registry import ModelSpec, make_model
    from wm_planning.training.checkpoint import (
        CHECKPOINT_FORMAT,
        CheckpointError,
        read_checkpoint_file,
        weights_digest,
    )

    _import_models()
    path = Path(path)
    ck = read_checkpoint_file(path, "visual checkpoint")
    if not isinstance(ck, dict):
        raise CheckpointError(f"{path} is not a {VISUAL_FORMAT} file")
    if ck.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a `wm-plan train` checkpoint ({ck.get('model')}); goal-image planning "
            "takes a `wm-plan train-visual` checkpoint (dino_wm, visual_foresight)"
        )
    fmt = ck.get("format")
    if fmt is None and {"name", "options", "spec", "state_dict"} <= ck.keys():
        pass  # written before the format header existed: no env, no checksum
    elif fmt != VISUAL_FORMAT:
        raise CheckpointError(f"{path} is not a {VISUAL_FORMAT} file")
    elif ck.get("version") != VISUAL_VERSION:
        raise CheckpointError(
            f"{path}: visual checkpoint version {ck.get('version')} but this code reads version "
            f"{VISUAL_VERSION}; retrain or use a matching wm-planning"
        )
    elif ck.get("weights_sha256") != weights_digest(ck["state_dict"]):
        raise CheckpointError(f"visual checkpoint {path} is corrupted: weights checksum mismatch")
    spec = ck["spec"]
    model = make_model(
        str(ck["name"]),
        ModelSpec(
            {k: tuple(v) for k, v in spec["obs_shapes"].items()},
            int(spec["action_dim"]),
            int(spec["episode_length"]),
        ),
        **ck["options"],
    )
    try:
        model.load_state_dict(ck["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit model {ck['name']!r} with its stored options: {e}"
        ) from e
    env = ck.get("env")
    return VisualCheckpoint(
        model.to(device).eval(), str(ck["name"]), None if env is None else str(env),
        dict(ck.get("config") or {}), int(ck.get("step", 0)), float(ck.get("seconds", 0.0)),
        ck.get("train_state"), dict(ck["options"]), _checked_box(path, ck.get("action_box"),
                                                                int(spec["action_dim"])),
    )  # fmt: skip


def _checked_box(path: Path, box: Any, action_dim: int) -> dict[str, Any] | None:
    from wm_planning.training.checkpoint import CheckpointError

    if box is None:
        return None
    low, high = box.get("low"), box.get("high")
    if not (isinstance(low, list) and isinstance(high, list)) or not (
        len(low) == len(high) == action_dim and all(a < b for a, b in zip(low, high, strict=True))
    ):
        raise CheckpointError(f"{path}: action_box must be {action_dim} low < high pairs: {box}")
    return dict(box)


def load_checkpoint(path: str | Path, device: str = "cpu") -> Any:
    """The model of :func:`load_visual_checkpoint` (eval mode, on ``device``)."""
    return load_visual_checkpoint(path, device).model


def planning_box(
    choice: str, box: dict[str, Any] | None, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The action box a plan samples from: the env's (``choice="env"``), or (``"data"``) the
    checkpoint's training-action box (:func:`action_box`) inside the env's; a checkpoint that
    records none plans in the env's box."""
    if choice not in ("data", "env"):
        raise ValueError(f"action_box must be 'data' or 'env', got {choice!r}")
    if choice == "env" or box is None:
        return low, high
    lo, hi = np.asarray(box["low"], dtype=float), np.asarray(box["high"], dtype=float)
    if lo.shape != low.shape:
        raise ValueError(
            f"the checkpoint's action box has {lo.shape[0]} actions, the env {low.shape[0]}"
        )
    lo, hi = np.clip(lo, low, high), np.clip(hi, low, high)
    return lo, np.maximum(hi, lo + 1e-6)

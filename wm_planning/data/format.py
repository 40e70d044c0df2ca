"""On-disk episode datasets (format described in ``docs/dataset_format.md``).

A dataset is a directory::

    meta.json            format name + version, env name, spec, collection config, counts, and
                         one entry per episode (file, length, seed, return, success, sha256)
    episode_000000.npz   one compressed npz per episode (keys below)

Episode keys (``T`` env steps): ``obs.<key>`` ``(T+1)×...`` (``state``/``proprio`` float32,
``pixels`` uint8 ``(T+1)×H×W×3``), ``action`` ``T×A`` float32, ``reward`` ``T`` float32,
``success``/``terminated``/``truncated`` ``T`` bool, ``physics.<name>`` sampled randomization
parameters, ``seed`` int64 scalar, ``format_version`` int64 scalar.

Files are written to a temporary name and renamed (atomic on POSIX), and ``meta.json`` is
rewritten after every episode, so an interrupted collection leaves a readable dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_NAME = "wm-planning-episodes"
FORMAT_VERSION = 1
META_FILE = "meta.json"


class DatasetError(RuntimeError):
    """A dataset on disk is missing, of another format version, or corrupted."""


@dataclass
class Episode:
    """One episode in memory. ``T`` = number of actions.

    obs: each ``(T+1)×...``; actions ``T×A``; rewards/success/terminated/truncated ``T``.
    physics: randomization parameters sampled for this episode (any shapes).
    """

    obs: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    seed: int
    physics: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32).reshape(-1)
        for name in ("success", "terminated", "truncated"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=bool).reshape(-1))
        if self.actions.ndim != 2:
            raise ValueError(f"actions must be T×A, got shape {self.actions.shape}")
        t = self.actions.shape[0]
        for name in ("rewards", "success", "terminated", "truncated"):
            if getattr(self, name).shape != (t,):
                raise ValueError(f"{name} must have shape ({t},), got {getattr(self, name).shape}")
        if not self.obs:
            raise ValueError("an episode needs at least one observation key")
        for k, v in self.obs.items():
            if "." in k or "/" in k:
                raise ValueError(f"observation key {k!r} must not contain '.' or '/'")
            if v.shape[0] != t + 1:
                raise ValueError(f"obs[{k!r}] must have T+1 = {t + 1} rows, got {v.shape}")
        if "pixels" in self.obs and self.obs["pixels"].dtype != np.uint8:
            raise ValueError(f"obs['pixels'] must be uint8, got {self.obs['pixels'].dtype}")

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {f"obs.{k}": v for k, v in self.obs.items()}
        out |= {
            "action": self.actions,
            "reward": self.rewards,
            "success": self.success,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "seed": np.asarray(self.seed, dtype=np.int64),
            "format_version": np.asarray(FORMAT_VERSION, dtype=np.int64),
        }
        out |= {f"physics.{k}": np.asarray(v) for k, v in self.physics.items()}
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Episode:
        return cls(
            obs={k[4:]: v for k, v in arrays.items() if k.startswith("obs.")},
            actions=arrays["action"],
            rewards=arrays["reward"],
            success=arrays["success"],
            terminated=arrays["terminated"],
            truncated=arrays["truncated"],
            seed=int(arrays["seed"]),
            physics={k[8:]: v for k, v in arrays.items() if k.startswith("physics.")},
        )


class EpisodeRecorder:
    """Collects one episode step by step and turns it into an :class:`Episode`.

    keep_obs: store observations (needed for :meth:`episode`); ``False`` keeps only the scalars,
    for evaluation loops that would otherwise hold every pixel frame.
    """

    def __init__(self, first_obs: Mapping[str, np.ndarray], keep_obs: bool = True) -> None:
        self.keep_obs = keep_obs
        self.frames: list[Mapping[str, np.ndarray]] = [first_obs] if keep_obs else []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.success: list[bool] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []

    def __len__(self) -> int:
        return len(self.actions)

    def add(
        self,
        action: np.ndarray,
        obs: Mapping[str, np.ndarray],
        reward: float,
        terminated: bool,
        truncated: bool,
        info: Mapping[str, Any],
    ) -> bool:
        """Record one ``env.step`` (the action and what it returned); ``True`` when it ended the
        episode."""
        if self.keep_obs:
            self.frames.append(obs)
        self.actions.append(action)
        self.rewards.append(float(reward))
        self.success.append(bool(info["success"]))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        return bool(terminated or truncated)

    def episode(self, seed: int, physics: dict[str, np.ndarray] | None = None) -> Episode:
        if not self.keep_obs:
            raise ValueError("this recorder kept no observations (keep_obs=False)")
        return Episode(
            obs={k: np.stack([f[k] for f in self.frames]) for k in self.frames[0]},
            actions=np.asarray(self.actions),
            rewards=np.asarray(self.rewards),
            success=np.asarray(self.success),
            terminated=np.asarray(self.terminated),
            truncated=np.asarray(self.truncated),
            seed=seed,
            physics=dict(physics or {}),
        )


def _jsonable(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        return _jsonable(asdict(x))
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _atomic_write(path: Path, write: Any) -> None:
    """Write via ``write(fileobj)`` into a temp file beside ``path``, then rename over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DatasetWriter:
    """Append episodes to a new dataset directory.

    Args:
        path: directory to create (must not hold a dataset unless ``overwrite``).
        env_name: registered env name.
        spec: the env's ``EnvSpec`` (or any dataclass/dict), stored in ``meta.json``.
        config: the collection config (plain dict), stored in ``meta.json``.
    """

    def __init__(
        self,
        path: str | Path,
        env_name: str,
        spec: Any,
        config: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if (self.path / META_FILE).exists() and not overwrite:
            raise FileExistsError(f"{self.path} already holds a dataset (pass overwrite=true)")
        self.path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for old in self.path.glob("episode_*.npz"):
                old.unlink()
        self.meta: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "env": env_name,
            "spec": _jsonable(spec),
            "config": _jsonable(config or {}),
            "num_episodes": 0,
            "num_steps": 0,
            "episodes": [],
        }
        self._write_meta()

    def _write_meta(self) -> None:
        data = json.dumps(self.meta, indent=1).encode()
        _atomic_write(self.path / META_FILE, lambda f: f.write(data))

    def add(self, episode: Episode) -> Path:
        """Write one episode (atomically) and update ``meta.json``; returns the file path."""
        i = self.meta["num_episodes"]
        file = self.path / f"episode_{i:06d}.npz"
        arrays = episode.to_arrays()
        _atomic_write(file, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]
        self.meta["episodes"].append(
            {
                "file": file.name,
                "length": len(episode),
                "seed": int(episode.seed),
                "return": float(episode.rewards.sum()),
                "success": bool(episode.success[-1]) if len(episode) else False,
                "sha256": _sha256(file),
            }
        )
        self.meta["num_episodes"] = i + 1
        self.meta["num_steps"] += len(episode)
        self._write_meta()
        return file


class Dataset:
    """Read a dataset directory; checks format, version and (by default) file checksums."""

    def __init__(self, path: str | Path, verify: bool = True) -> None:
        self.path = Path(path)
        self.verify = verify
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DatasetError(f"{self.path} is not a dataset: {META_FILE} missing")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DatasetError(f"{meta_path} is corrupted: {e}") from e
        if self.meta.get("format") != FORMAT_NAME:
            raise DatasetError(f"{meta_path}: not a {FORMAT_NAME} dataset")
        if self.meta.get("version") != FORMAT_VERSION:
            raise DatasetError(
                f"{meta_path}: format version {self.meta.get('version')} but this code reads "
                f"version {FORMAT_VERSION}; convert the dataset or use a matching wm-planning"
            )

    @property
    def env_name(self) -> str:
        return str(self.meta["env"])

    def __len__(self) -> int:
        return int(self.meta["num_episodes"])

    def load(self, i: int) -> Episode:
        if not 0 <= i < len(self):
            raise IndexError(f"episode {i} out of range for {len(self)} episodes")
        entry = self.meta["episodes"][i]
        file = self.path / entry["file"]
        if not file.is_file():
            raise DatasetError(f"{file} missing")
        if self.verify and _sha256(file) != entry["sha256"]:
            raise DatasetError(f"{file} is corrupted: checksum differs from {META_FILE}")
        try:
            with np.load(file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{file} is corrupted: {e}") from e
        version = int(arrays.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise DatasetError(f"{file}: format version {version}, expected {FORMAT_VERSION}")
        try:
            ep = Episode.from_arrays(arrays)
        except (KeyError, ValueError) as e:
            raise DatasetError(f"{file} is corrupted: {e}") from e
        if len(ep) != entry["length"]:
            raise DatasetError(f"{file}: length {len(ep)} but {META_FILE} says {entry['length']}")
        return ep

    def __iter__(self) -> Iterator[Episode]:
        return (self.load(i) for i in range(len(self)))

    def arrays(self, key: str) -> Iterator[np.ndarray]:
        """One array of every episode (a file key such as ``"action"`` or ``"obs.proprio"``),
        decompressing only that member of each file: the pixels stay on disk. The checksum needs
        the whole file and is not checked here; :meth:`load` checks it."""
        for entry in self.meta["episodes"]:
            file = self.path / entry["file"]
            try:
                with np.load(file, allow_pickle=False) as z:
                    yield np.asarray(z[key])
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
                raise DatasetError(f"{file}: no readable {key} ({e}; see {META_FILE})") from e

"""Replay buffer of whole episodes with ``B×L`` window sampling.

Rows are stored flat: an episode of ``T`` actions takes ``T+1`` rows (one per observation; its
action/reward/terminated rows are padded by one so every array shares the row index). Storage
grows by doubling (amortised O(1) appends, no re-concatenation of pixels), so the same class is
the online buffer and, filled from a :class:`~wm_planning.data.Dataset`, the offline one.
Batches have the :class:`~wm_planning.data.SequenceLoader` layout: ``obs.<key>`` ``B×(L+1)×…``,
``action`` ``B×L×A``, ``reward``/``terminated`` ``B×L``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from wm_planning.data import Dataset, Episode


class ReplayBuffer:
    """Episodes in memory.

    obs_keys: observation keys kept (others are dropped to save memory).
    capacity: maximum stored env steps; when exceeded the oldest episodes are dropped.
    """

    def __init__(self, obs_keys: Iterable[str], capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.obs_keys = sorted(obs_keys)
        self.capacity = capacity
        self._arrays: dict[str, np.ndarray] = {}
        self._rows = 0
        self._episodes: list[tuple[int, int]] = []  # (first row, number of actions T)
        self._starts: Tensor = torch.zeros(0, dtype=torch.long)
        self._starts_len = -1  # seq_len the cached window starts were built for

    @classmethod
    def from_dataset(
        cls, dataset: Dataset, obs_keys: Iterable[str], capacity: int = 1_000_000
    ) -> ReplayBuffer:
        buf = cls(obs_keys, capacity)
        for ep in dataset:
            buf.add(ep)
        return buf

    @property
    def num_steps(self) -> int:
        return sum(t for _, t in self._episodes)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    def _ensure(self, rows: int, example: dict[str, np.ndarray]) -> None:
        if not self._arrays:
            self._arrays = {
                k: np.empty((max(rows, 1024), *v.shape[1:]), v.dtype) for k, v in example.items()
            }
        cap = next(iter(self._arrays.values())).shape[0]
        if self._rows + rows <= cap:
            return
        new_cap = max(2 * cap, self._rows + rows)
        for k, v in self._arrays.items():
            grown = np.empty((new_cap, *v.shape[1:]), v.dtype)
            grown[: self._rows] = v[: self._rows]
            self._arrays[k] = grown

    def add(self, episode: Episode) -> None:
        """Append one episode (its observations for ``obs_keys``, actions, rewards, terminated)."""
        missing = set(self.obs_keys) - set(episode.obs)
        if missing:
            raise ValueError(f"episode lacks observation keys {sorted(missing)}")
        t = len(episode)
        pad = np.zeros((1, *episode.actions.shape[1:]), np.float32)
        cols = {f"obs.{k}": episode.obs[k] for k in self.obs_keys}
        cols["action"] = np.concatenate([episode.actions, pad])
        cols["reward"] = np.concatenate([episode.rewards, [0.0]]).astype(np.float32)
        cols["terminated"] = np.concatenate([episode.terminated, [False]])
        self._ensure(t + 1, cols)
        for k, v in cols.items():
            if self._arrays[k].shape[1:] != v.shape[1:]:
                raise ValueError(
                    f"{k}: shape {v.shape[1:]} differs from stored {self._arrays[k].shape[1:]}"
                )
            self._arrays[k][self._rows : self._rows + t + 1] = v
        self._episodes.append((self._rows, t))
        self._rows += t + 1
        self._starts_len = -1
        if self.num_steps > self.capacity:
            self._evict()

    def _evict(self) -> None:
        """Drop the oldest episodes until within capacity, compacting the rows."""
        while self.num_steps > self.capacity and len(self._episodes) > 1:
            self._episodes.pop(0)
        first = self._episodes[0][0]
        for _k, v in self._arrays.items():
            v[: self._rows - first] = v[first : self._rows].copy()
        self._rows -= first
        self._episodes = [(r - first, t) for r, t in self._episodes]

    def _window_starts(self, seq_len: int) -> Tensor:
        if self._starts_len != seq_len:
            starts = [np.arange(r, r + t - seq_len + 1) for r, t in self._episodes if t >= seq_len]
            self._starts = (
                torch.from_numpy(np.concatenate(starts))
                if starts
                else torch.zeros(0, dtype=torch.long)
            )
            self._starts_len = seq_len
        return self._starts

    def sample(
        self,
        batch_size: int,
        seq_len: int,
        generator: torch.Generator,
        device: str | torch.device = "cpu",
    ) -> dict[str, Tensor]:
        """``batch_size`` windows of ``seq_len`` actions, uniformly over all valid starts."""
        starts = self._window_starts(seq_len)
        if starts.numel() == 0:
            raise ValueError(f"no stored episode has >= seq_len={seq_len} steps")
        w = starts[torch.randint(starts.numel(), (batch_size,), generator=generator)].numpy()
        rows = w[:, None] + np.arange(seq_len + 1)  # B×(L+1)
        out: dict[str, Tensor] = {}
        for k, v in self._arrays.items():
            r = rows if k.startswith("obs.") else rows[:, :-1]
            out[k] = torch.from_numpy(v[r]).to(device)
        return out

    def obs_stats(self, key: str) -> tuple[Tensor, Tensor]:
        """Mean and std ``S`` of stored float observations ``key`` (for normalisation)."""
        x = torch.from_numpy(self._arrays[f"obs.{key}"][: self._rows]).double()
        x = x.reshape(x.shape[0], -1)
        return x.mean(0).float(), x.std(0, correction=0).float()

"""Training batches of sub-sequences from episodes held in memory.

All episodes are concatenated per key once; a batch is one vectorised gather. A window of
length ``L`` starting at step ``t`` of an episode holds ``obs[t : t+L+1]`` (``L+1`` frames, the
last one the observation after the last action), ``actions/rewards/success/terminated
[t : t+L]``; it never crosses an episode boundary (episodes shorter than ``L`` contribute none).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from .format import Dataset, Episode


class SequenceLoader:
    """Samples ``B×L`` windows as torch tensors.

    Batch keys: ``obs.<key>`` ``B×(L+1)×...`` (pixels stay uint8), ``action`` ``B×L×A``,
    ``reward`` ``B×L``, ``success``/``terminated`` ``B×L`` bool, ``episode``/``start`` ``B``
    (which episode and step each window came from).

    Args:
        episodes: a :class:`Dataset` or episodes.
        seq_len: ``L`` (actions per window).
        batch_size: ``B``.
        obs_keys: observation keys to load (default: all).
        device: where batches are returned (data stays on CPU; one copy per batch).
    """

    def __init__(
        self,
        episodes: Dataset | Iterable[Episode],
        seq_len: int,
        batch_size: int,
        obs_keys: Iterable[str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        eps = list(episodes)
        if not eps:
            raise ValueError("no episodes to load")
        keys = list(obs_keys) if obs_keys is not None else sorted(eps[0].obs)
        for i, e in enumerate(eps):
            missing = set(keys) - set(e.obs)
            if missing:
                raise ValueError(f"episode {i} lacks observation keys {sorted(missing)}")
        self.seq_len, self.batch_size, self.device = seq_len, batch_size, torch.device(device)
        lengths = np.array([len(e) for e in eps])
        act_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        obs_start = act_start + np.arange(len(eps))  # each episode has one more obs than actions
        self._obs = {k: torch.from_numpy(np.concatenate([e.obs[k] for e in eps])) for k in keys}
        self._act = torch.from_numpy(np.concatenate([e.actions for e in eps]))
        self._rew = torch.from_numpy(np.concatenate([e.rewards for e in eps]))
        self._suc = torch.from_numpy(np.concatenate([e.success for e in eps]))
        self._term = torch.from_numpy(np.concatenate([e.terminated for e in eps]))
        # every valid (episode, start) pair, flattened
        n_win = np.maximum(lengths - seq_len + 1, 0)
        if n_win.sum() == 0:
            raise ValueError(f"no episode is at least seq_len={seq_len} steps long")
        ep_idx = np.repeat(np.arange(len(eps)), n_win)
        within = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)
        self._win_ep = torch.from_numpy(ep_idx)
        self._win_start = torch.from_numpy(within)
        self._win_obs = torch.from_numpy(obs_start[ep_idx] + within)
        self._win_act = torch.from_numpy(act_start[ep_idx] + within)

    @property
    def num_windows(self) -> int:
        return int(self._win_ep.numel())

    def sample(self, generator: torch.Generator) -> dict[str, Tensor]:
        """One batch; windows drawn uniformly (with replacement) using ``generator``."""
        w = torch.randint(self.num_windows, (self.batch_size,), generator=generator)
        steps = torch.arange(self.seq_len + 1)
        oi = self._win_obs[w, None] + steps  # B×(L+1)
        ai = self._win_act[w, None] + steps[:-1]  # B×L
        batch = {f"obs.{k}": v[oi] for k, v in self._obs.items()}
        batch |= {
            "action": self._act[ai],
            "reward": self._rew[ai],
            "success": self._suc[ai],
            "terminated": self._term[ai],
            "episode": self._win_ep[w],
            "start": self._win_start[w],
        }
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        """Endless batches from a generator seeded with 0 (use :meth:`sample` to control it)."""
        g = torch.Generator().manual_seed(0)
        while True:
            yield self.sample(g)

"""Where a dataset's observations lie: a Gaussian fit and the radius that holds a quantile of them.

A learned model has only seen the states of its training data. An evaluation that logs how far
each observed state is from that data (``wm-plan goal`` with ``held_out_from=``) shows when the
robot has gone where the model's predictions are extrapolations. On the push task the planned
arm spends most of every episode outside its data, successes included (``docs/goal_images.md``).

The distance is Mahalanobis, not a per-axis range: the data's joints move together (a scripted
pusher keeps its tip low), and a departure across that correlation stays inside every axis's range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORT_QUANTILE = 0.999


@dataclass(frozen=True)
class DataSupport:
    """``mean`` ``E``, ``whiten`` ``E×E`` (``(x − mean) @ whiten`` has identity covariance over
    the data) and ``radius``: the ``quantile`` of the data's own Mahalanobis distances."""

    mean: np.ndarray
    whiten: np.ndarray
    radius: float
    quantile: float
    count: int  # samples fitted

    @classmethod
    def fit(cls, samples: np.ndarray, quantile: float = SUPPORT_QUANTILE) -> DataSupport:
        """``N×E`` samples (N > E, finite) -> their support."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] <= x.shape[1]:
            raise ValueError(f"DataSupport.fit needs N×E samples with N > E, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("DataSupport.fit: samples must be finite")
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
        mean = x.mean(0)
        cov = np.atleast_2d(np.cov(x.T))
        # a ridge keeps a dimension the data never varies finite (leaving it then counts strongly)
        ridge = 1e-9 * max(float(np.trace(cov)) / cov.shape[0], 1e-12)
        whiten = np.linalg.cholesky(np.linalg.inv(cov + ridge * np.eye(cov.shape[0])))
        d = np.linalg.norm((x - mean) @ whiten, axis=-1)
        return cls(mean, whiten, float(np.quantile(d, quantile)), float(quantile), x.shape[0])

    def distance(self, x: np.ndarray) -> np.ndarray:
        """``…×E`` -> ``…`` Mahalanobis distance to the data (``radius`` holds ``quantile``
        of it)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"DataSupport of {self.mean.shape[0]} values, got {x.shape[-1]}")
        return np.linalg.norm((x - self.mean) @ self.whiten, axis=-1)


def proprio_support(dirs: Sequence[str | Path], quantile: float = SUPPORT_QUANTILE) -> DataSupport:
    """The :class:`DataSupport` of the ``obs.proprio`` of every episode in dataset directories
    (read without the pixels)."""
    from .format import META_FILE, Dataset, DatasetError

    rows = []
    for d in dirs:
        ds = Dataset(d)
        for entry in ds.meta["episodes"]:
            file = ds.path / entry["file"]
            try:
                with np.load(file, allow_pickle=False) as z:
                    rows.append(np.asarray(z["obs.proprio"], dtype=np.float64))
            except (OSError, KeyError, ValueError) as e:
                raise DatasetError(f"{file}: no readable obs.proprio ({e}; see {META_FILE})") from e
    if not rows:
        raise DatasetError(f"no episodes with proprioception in {list(map(str, dirs))}")
    return DataSupport.fit(np.concatenate(rows), quantile)

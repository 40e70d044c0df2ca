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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .format import Dataset

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

    def excess(self, x: np.ndarray) -> np.ndarray:
        """``…×E`` -> ``…``: how far beyond ``radius`` each point lies, squared (0 inside)."""
        return np.maximum(self.distance(x) - self.radius, 0.0) ** 2


def proprio_support(
    datasets: Sequence[str | Path | Dataset],
    quantile: float = SUPPORT_QUANTILE,
    columns: int | None = None,
) -> DataSupport:
    """The :class:`DataSupport` of the ``obs.proprio`` of every episode in datasets (directories
    or opened :class:`~wm_planning.data.format.Dataset`; read without the pixels); ``columns``:
    its first ``columns`` values only (the arm's joint positions, before the velocities)."""
    from .format import Dataset, DatasetError

    opened = [d if isinstance(d, Dataset) else Dataset(d) for d in datasets]
    rows = [a[:, :columns].astype(np.float64) for ds in opened for a in ds.arrays("obs.proprio")]
    if not rows:
        raise DatasetError(f"no episodes with proprioception in {[str(d.path) for d in opened]}")
    return DataSupport.fit(np.concatenate(rows), quantile)

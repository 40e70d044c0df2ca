"""Sampling helpers shared by the planners: white and colored Gaussian noise, and the
per-iteration diagnostics log.

Every draw comes from the caller's ``torch.Generator`` on that generator's device, so a plan is
reproducible from its seed. Shapes: ``N`` sequences, ``H`` horizon, ``A`` action dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def gaussian(num: int, horizon: int, action_dim: int, generator: torch.Generator) -> Tensor:
    """White standard-normal noise ``N×H×A``."""
    return torch.randn(num, horizon, action_dim, generator=generator, device=generator.device)


class ColoredNoise:
    """Gaussian noise with power spectral density ∝ ``1/f^beta`` along time (dim -2).

    ``beta = 0`` is white noise, ``beta = 1`` pink, ``beta = 2`` red/Brownian-like (smooth action
    sequences, the iCEM default). Built via an inverse real FFT of a spectrum with random phases
    (the construction of Timmer & König 1995, as in the ``colorednoise`` package), then divided by
    the exact per-time-step standard deviation so every sample has unit variance in expectation.
    The lowest frequency is floored at ``1/H`` so the DC term does not blow up.

    The scale vector is built once per plan (``__init__``); :meth:`sample` is one ``randn`` and
    one ``irfft``.
    """

    def __init__(self, beta: float, horizon: int, device: torch.device) -> None:
        if beta < 0 or not math.isfinite(beta):
            raise ValueError(f"colored noise exponent beta must be finite and >= 0, got {beta}")
        self.beta = beta
        self.horizon = horizon
        self.white = beta == 0 or horizon == 1
        if self.white:
            return
        freqs = torch.fft.rfftfreq(horizon, dtype=torch.float64).clamp(min=1.0 / horizon)
        scale = freqs.pow(-beta / 2)
        # DC (and Nyquist for even H) are real; multiplying their real part by sqrt(2) keeps the
        # power per bin consistent with the complex bins.
        real_only = torch.zeros_like(scale, dtype=torch.bool)
        real_only[0] = True
        if horizon % 2 == 0:
            real_only[-1] = True
        real_scale = torch.where(real_only, scale * math.sqrt(2.0), scale)
        imag_scale = torch.where(real_only, torch.zeros_like(scale), scale)
        # Var(y_t) = (1/H^2) * (sum over real-only bins of (sqrt2 s)^2 + sum over complex bins of
        # 4 s^2), since each complex bin appears with its conjugate in the Hermitian spectrum.
        var = (real_scale[real_only].pow(2).sum() + 4 * scale[~real_only].pow(2).sum()) / horizon**2
        norm = var.sqrt()
        self._scale = torch.stack([real_scale / norm, imag_scale / norm], dim=-1).to(
            device, torch.float32
        )  # F×2

    def sample(self, num: int, action_dim: int, generator: torch.Generator) -> Tensor:
        """Unit-variance colored noise ``N×H×A`` (correlated along H, independent across A)."""
        if self.white:
            return gaussian(num, self.horizon, action_dim, generator)
        freqs = self._scale.shape[0]
        white = torch.randn(num, action_dim, freqs, 2, generator=generator, device=generator.device)
        spectrum = torch.view_as_complex(white * self._scale)  # N×A×F
        return torch.fft.irfft(spectrum, n=self.horizon, dim=-1).transpose(-1, -2)


class IterationLog:
    """Collects per-iteration costs and sampling std without any host sync; :meth:`info` turns
    them into the ``PlanResult.info`` tensors once, after the loop.

    ``best_cost[i]``: lowest cost evaluated in iteration ``i``; ``mean_cost[i]``: mean of the
    finite costs of iteration ``i`` (NaN if none); ``std[i]``: sampling std used in iteration ``i``,
    averaged over ``H×A`` (action units); ``num_evaluated``: sequences passed to the objective,
    counting any extra evaluation of a returned mean.
    """

    def __init__(self) -> None:
        self._costs: list[Tensor] = []
        self._stds: list[Tensor] = []
        self.num_evaluated = 0

    def record(self, costs: Tensor, std: Tensor) -> None:
        """costs: ``B`` of one iteration (kept by reference, never modified); std: ``H×A`` or
        scalar sampling std of that iteration."""
        self._costs.append(costs.detach())
        self._stds.append(std.detach().mean())
        self.num_evaluated += costs.shape[0]

    def count(self, n: int) -> None:
        """Count evaluations that are not part of an iteration (e.g. the returned mean)."""
        self.num_evaluated += n

    def info(self, device: torch.device) -> dict[str, Tensor]:
        if not self._costs:
            empty = torch.empty(0, device=device)
            return {
                "best_cost": empty,
                "mean_cost": empty,
                "std": empty,
                "num_evaluated": torch.tensor(self.num_evaluated, device=device),
            }
        # Pad to a common width with +inf: never the best, excluded from the finite mean.
        costs = torch.nn.utils.rnn.pad_sequence(
            self._costs, batch_first=True, padding_value=math.inf
        )
        finite = torch.isfinite(costs)
        mean = torch.where(finite, costs, 0.0).sum(1) / finite.sum(1)
        return {
            "best_cost": costs.min(dim=1).values,
            "mean_cost": mean,
            "std": torch.stack(self._stds),
            "num_evaluated": torch.tensor(self.num_evaluated, device=device),
        }

"""The machine's own matmul peak, measured in the same run, thread count and device as the plans.

Large square fp32 matmuls (not the plan's own shapes): the best of several repetitions of
``n×n @ n×n`` for each ``n``, best over sizes. Best, not median, because the peak is what the
hardware can do; noise only ever slows a repetition down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Peak:
    gflops: float
    size: int
    device: str
    threads: int

    def describe(self) -> str:
        return (
            f"matmul peak {self.gflops:.1f} GFLOP/s (fp32 {self.size}×{self.size}, best of reps, "
            f"{self.device}, {self.threads} threads)"
        )


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(
    device: torch.device, sizes: tuple[int, ...] = (2048, 3072), reps: int = 5
) -> Peak:
    """Best GFLOP/s of ``torch.mm`` on square fp32 matrices of each size in ``sizes``."""
    gen = torch.Generator(device=device).manual_seed(0)
    best, best_size = 0.0, sizes[0]
    for n in sizes:
        a = torch.randn(n, n, generator=gen, device=device)
        b = torch.randn(n, n, generator=gen, device=device)
        out = torch.empty(n, n, device=device)
        torch.mm(a, b, out=out)  # warm-up: allocation, library initialisation
        synchronize(device)
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            synchronize(device)
            gflops = 2 * n**3 / (time.perf_counter() - start) / 1e9
            if gflops > best:
                best, best_size = gflops, n
    return Peak(best, best_size, str(device), torch.get_num_threads())

"""FLOP counting: ``2·m·n·k`` for every matrix multiply that actually executes.

:func:`count_matmul_flops` runs a function under ``torch.utils.flop_counter.FlopCounterMode``,
which intercepts ``mm``/``addmm``/``bmm``/``baddbmm``/convolutions at dispatch, so what is counted
is exactly what ran (prior trajectories, the final evaluation, the two Q heads picked or all of
them), not what a formula assumes. Element-wise work is not counted: GFLOP/s here is matmul
throughput, comparable with the matmul peak. Counting needs eager execution; compiled code does the
same multiplies, so the eager count is used for both modes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from torch.utils.flop_counter import FlopCounterMode

T = TypeVar("T")


def count_matmul_flops(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[int, T]:
    """``(flops, fn(*args, **kwargs))`` with ``flops`` the matmul FLOPs executed by the call."""
    with FlopCounterMode(display=False) as mode:
        out = fn(*args, **kwargs)
    return int(mode.get_total_flops()), out


def linear_flops(batch: int, in_features: int, out_features: int) -> int:
    """FLOPs of ``batch×in @ in×out`` (bias adds are not counted)."""
    return 2 * batch * in_features * out_features


def mlp_flops(batch: int, dims: list[int]) -> int:
    """FLOPs of an MLP with layer widths ``dims`` (``[in, hidden..., out]``) on ``batch`` rows."""
    return sum(linear_flops(batch, a, b) for a, b in itertools.pairwise(dims))

"""Planner benchmark: synthetic world models of real sizes, FLOP counting, the machine's matmul
peak, a pytorch_mppi baseline, and table/JSON output (``wm-plan bench planners``)."""

from .cases import BenchCase, bench_case, cases, get_case, options_for, planner_options
from .flops import count_matmul_flops, linear_flops, mlp_flops
from .models import (
    TDMPC2_1M,
    TDMPC2_5M,
    RSSMFused,
    RSSMReference,
    RSSMSize,
    SyntheticModel,
    TDMPC2Fused,
    TDMPC2Reference,
    TDMPC2Size,
    objective,
)
from .peak import Peak, measure_matmul_peak
from .runner import MODES, PYTORCH_MPPI, Report, Row, bench_group, resolve_device, run

__all__ = [
    "MODES",
    "PYTORCH_MPPI",
    "TDMPC2_1M",
    "TDMPC2_5M",
    "BenchCase",
    "Peak",
    "RSSMFused",
    "RSSMReference",
    "RSSMSize",
    "Report",
    "Row",
    "SyntheticModel",
    "TDMPC2Fused",
    "TDMPC2Reference",
    "TDMPC2Size",
    "bench_case",
    "bench_group",
    "cases",
    "count_matmul_flops",
    "get_case",
    "linear_flops",
    "measure_matmul_peak",
    "mlp_flops",
    "objective",
    "options_for",
    "planner_options",
    "resolve_device",
    "run",
]

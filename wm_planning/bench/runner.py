"""Run planners on reference configurations and report time, throughput and share of peak."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from wm_planning import planners

from . import torch_mppi
from .cases import BenchCase, get_case, options_for
from .flops import count_matmul_flops
from .models import CostFn, SyntheticModel, objective
from .peak import Peak, measure_matmul_peak, synchronize

PYTORCH_MPPI = "pytorch_mppi"
MODES = ("eager", "compile")


@dataclass
class Row:
    """One benchmark row: a planner on a configuration, in one mode, on one device."""

    config: str
    planner: str
    model: str  # model implementation: "fused" or "reference"
    mode: str
    device: str
    threads: int
    repeats: int
    median_ms: float
    p90_ms: float
    rollouts: int  # sequences rolled out per plan (all iterations, prior, final evaluation)
    rollouts_per_s: float
    gflop_per_plan: float  # matmul FLOPs per plan (counted as executed)
    gflops: float  # achieved: gflop_per_plan / median time
    pct_peak: float  # gflops / measured matmul peak
    speedup: float | None = None  # pytorch_mppi rows: their median / our MPPI's median
    matmul_time_pct: float | None = None  # --profile: share of profiled op time in matmuls
    top_ops: str = ""  # --profile: the ops taking most time, "name share%; ..."
    note: str = ""


@dataclass
class Report:
    peak: Peak
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"peak": asdict(self.peak), "rows": [asdict(r) for r in self.rows]})

    def table(self) -> str:
        head = (
            f"{'config':<10} {'planner':<13} {'model':<9} {'mode':<7} {'device':<6} {'thr':>3} "
            f"{'median ms':>10} {'p90 ms':>9} {'rollouts/s':>11} {'GFLOP/s':>8} {'% peak':>7} "
            f"{'speedup':>8}"
        )
        lines = [self.peak.describe(), head, "-" * len(head)]
        for r in self.rows:
            speed = "" if r.speedup is None else f"{r.speedup:.2f}x"
            lines.append(
                f"{r.config:<10} {r.planner:<13} {r.model:<9} {r.mode:<7} {r.device:<6} "
                f"{r.threads:>3} {r.median_ms:>10.1f} {r.p90_ms:>9.1f} {r.rollouts_per_s:>11.0f} "
                f"{r.gflops:>8.1f} {r.pct_peak:>6.1f}% {speed:>8}"
            )
        for r in self.rows:
            if r.matmul_time_pct is not None:
                lines.append(
                    f"profile {r.config} {r.planner} {r.model} {r.mode}: "
                    f"{r.matmul_time_pct:.0f}% of op time in matmuls; top: {r.top_ops}"
                )
        notes = sorted({r.note for r in self.rows if r.note})
        lines += [f"note: {n}" for n in notes]
        return "\n".join(lines)


_MATMUL_OPS = frozenset(
    {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"}
)


def profile_plan(plan: Callable[[], object], top: int = 6) -> tuple[float, str]:
    """Run ``plan`` once under ``torch.profiler``: (% of self op time in matmul kernels, the
    ``top`` ops by self time). Compiled code shows its fused kernels as graph calls and its
    matmuls as ``aten::addmm``/``mm`` (inductor calls them as extern kernels)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        plan()
    events = [e for e in prof.key_averages() if e.self_device_time_total or e.self_cpu_time_total]
    use_device = any(e.self_device_time_total for e in events)

    def self_time(e: object) -> float:
        return float(getattr(e, "self_device_time_total" if use_device else "self_cpu_time_total"))

    total = sum(self_time(e) for e in events) or 1.0
    matmul = sum(self_time(e) for e in events if e.key in _MATMUL_OPS)
    ranked = sorted(events, key=self_time, reverse=True)[:top]
    tops = "; ".join(f"{e.key} {100 * self_time(e) / total:.0f}%" for e in ranked)
    return 100 * matmul / total, tops


def percentile(xs: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` in [0, 100]."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def _grad_mode(enabled: bool) -> Iterator[None]:
    with torch.set_grad_enabled(enabled):
        yield


class _Counting:
    """Objective wrapper counting the sequences it scores."""

    def __init__(self, fn: Callable[[Tensor], Tensor]) -> None:
        self.fn, self.rows = fn, 0

    def __call__(self, actions: Tensor) -> Tensor:
        self.rows += actions.shape[0]
        return self.fn(actions)


def _compile(fn: Callable, enabled: bool) -> Callable:
    # Static shapes: each batch size (samples, final 1-row evaluation, prior) gets its own
    # specialised graph rather than one dynamic-shape graph.
    return torch.compile(fn, dynamic=False) if enabled else fn


def _time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _make_plan(
    case: BenchCase,
    planner_name: str,
    model: SyntheticModel,
    device: torch.device,
    cost_fn: CostFn,
    seed: int,
    counter: list[_Counting] | None = None,
) -> tuple[Callable[[], object], bool]:
    """A zero-argument function doing one whole plan (prior + planner), and whether it needs
    gradients; ``counter`` collects a :class:`_Counting` per plan."""
    planner = planners.make(planner_name, **options_for(planner_name, case))

    def plan() -> object:
        g_plan = torch.Generator(device=device).manual_seed(seed)
        g_model = torch.Generator(device=device).manual_seed(seed + 1)
        prior = model.prior(case.num_prior, case.horizon, g_model) if case.num_prior else None
        obj: Callable[[Tensor], Tensor] = objective(model, g_model, cost_fn)
        if counter is not None:
            counter.append(_Counting(obj))
            obj = counter[-1]
        return planner(obj, generator=g_plan, prior=prior)

    return plan, planner.needs_gradients


@dataclass
class _Prepared:
    planner: str
    plan: Callable[[], object]
    needs_grad: bool
    flops: int
    rollouts: int
    note: str = ""


def _prepare(
    case: BenchCase,
    planner_name: str,
    model: SyntheticModel,
    cost_fn: CostFn,
    compiled: bool,
    device: torch.device,
    seed: int,
) -> _Prepared:
    """Build one planner's plan function and count its FLOPs and rollouts with an eager plan."""
    if planner_name == PYTORCH_MPPI:
        step = _compile(model.step, compiled)
        term = _compile(model.terminal_value, compiled)
        adapter = torch_mppi.PytorchMPPIPlan(model, case, device, step_fn=step, terminal_fn=term)
        eager = torch_mppi.PytorchMPPIPlan(model, case, device)

        def plan() -> object:
            return adapter(torch.Generator(device=device).manual_seed(seed + 1), seed)

        with torch.no_grad():
            flops, _ = count_matmul_flops(
                eager, torch.Generator(device=device).manual_seed(seed + 1), seed
            )
        note = (
            f"{PYTORCH_MPPI}: {case.iterations} command() calls per plan, shift off, same "
            "samples/horizon/lambda/prior/model step"
        )
        # K rollouts per command, plus the prior's policy rollout (as for ours)
        rollouts = case.iterations * case.num_samples + case.num_prior
        return _Prepared(planner_name, plan, False, flops, rollouts, note)
    plan, needs_grad = _make_plan(case, planner_name, model, device, cost_fn, seed)
    counted: list[_Counting] = []
    plan_eager, _ = _make_plan(case, planner_name, model, device, model.rollout_cost, seed, counted)
    with _grad_mode(needs_grad):
        flops, _ = count_matmul_flops(plan_eager)
    rollouts = sum(c.rows for c in counted) + case.num_prior
    return _Prepared(planner_name, plan, needs_grad, flops, rollouts)


def bench_group(
    case: BenchCase,
    planner_names: Sequence[str],
    impl: str,
    mode: str,
    device: torch.device,
    peak: Peak,
    repeats: int,
    warmup: int,
    seed: int = 0,
    profile: bool = False,
) -> list[Row]:
    """Rows for several planners on one model, timed *interleaved* (one plan of each planner per
    round) so that background load hits every planner alike and their ratios stay meaningful."""
    compiled = mode == "compile"
    model = case.models[impl](seed).to(device)
    # One compiled objective shared by every planner of the group (same graphs for equal shapes).
    cost_fn = _compile(model.rollout_cost, compiled)
    prepared = [_prepare(case, p, model, cost_fn, compiled, device, seed) for p in planner_names]
    times: dict[str, list[float]] = {p.planner: [] for p in prepared}
    for p in prepared:
        with _grad_mode(p.needs_grad):
            _time(p.plan, device, warmup + (2 if compiled else 0), 0)
    for _ in range(repeats):
        for p in prepared:
            with _grad_mode(p.needs_grad):
                times[p.planner] += _time(p.plan, device, 0, 1)
    rows = []
    for p in prepared:
        prof = None
        if profile:
            with _grad_mode(p.needs_grad):
                prof = profile_plan(p.plan)
        med = statistics.median(times[p.planner])
        gflops = p.flops / 1e9 / (med / 1e3)
        rows.append(
            Row(
                config=case.name,
                planner=p.planner,
                model=impl,
                mode=mode,
                device=device.type,
                threads=torch.get_num_threads(),
                repeats=repeats,
                median_ms=med,
                p90_ms=percentile(times[p.planner], 90),
                rollouts=p.rollouts,
                rollouts_per_s=p.rollouts / (med / 1e3),
                gflop_per_plan=p.flops / 1e9,
                gflops=gflops,
                pct_peak=100 * gflops / peak.gflops,
                matmul_time_pct=None if prof is None else prof[0],
                top_ops="" if prof is None else prof[1],
                note=p.note,
            )
        )
    by_name = {r.planner: r for r in rows}
    if PYTORCH_MPPI in by_name and "mppi" in by_name:
        by_name[PYTORCH_MPPI].speedup = by_name[PYTORCH_MPPI].median_ms / by_name["mppi"].median_ms
    return rows


def run(
    configs: Sequence[str],
    planner_names: Sequence[str],
    modes: Sequence[str],
    impls: Sequence[str],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    peak_sizes: tuple[int, ...] = (2048, 3072),
    peak_reps: int = 5,
    on_row: Callable[[Row], None] | None = None,
    profile: bool = False,
) -> Report:
    """Benchmark every (config, model implementation, mode) group of planners; pytorch_mppi rows
    get the speedup of our ``mppi`` in the same group."""
    peak = measure_matmul_peak(device, peak_sizes, peak_reps)
    report = Report(peak)
    names = [p for p in planner_names if p != PYTORCH_MPPI or torch_mppi.available()]
    # Every batch size of every planner (iCEM's populations, the final 1-row evaluation, the
    # prior) is its own static graph: allow more than dynamo's default 8 per function.
    with torch._dynamo.config.patch(recompile_limit=64):
        for name in configs:
            case = get_case(name)
            for impl in impls:
                for mode in modes:
                    torch._dynamo.reset()
                    rows = bench_group(
                        case, names, impl, mode, device, peak, repeats, warmup, profile=profile
                    )
                    report.rows += rows
                    for row in rows:
                        if on_row is not None:
                            on_row(row)
    # Noise only ever slows a matmul down: measure the peak again after the plans and keep the
    # best, so a busy moment at the start cannot inflate the shares of peak.
    again = measure_matmul_peak(device, peak_sizes, peak_reps)
    if again.gflops > peak.gflops:
        report.peak = again
        for row in report.rows:
            row.pct_peak = 100 * row.gflops / again.gflops
    return report

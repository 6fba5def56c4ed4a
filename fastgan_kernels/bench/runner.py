"""Run suites: for each case, every provider on the same inputs, checked and timed in the same run.

Per case: make the inputs once, compute the reference once, then for each provider
that can run it: build it (compilation is timed as ``setup_s``), call it once and
compare with the reference, call it once more as warm-up, and time all providers
together (interleaved blocks on the CPU, one after another with CUDA events on the
GPU). A provider that cannot run a case is recorded as skipped with its reason; one
that raises is a row with status "error". Nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .. import testing
from . import allocator, machine, timing
from .registry import Case, Provider, Suite, dtype_name, get_suite, suite_names
from .report import Report, Row


WARMUP_SKIP_S = 1.0  # no separate warm-up call after a checked call that took longer than this


@dataclass
class RunOptions:
    ops: Optional[Sequence[str]] = None          # None: every registered suite
    device: str = "cpu"
    quick: bool = False
    providers: Optional[Sequence[str]] = None    # None: each suite's default providers
    dtypes: Optional[Sequence[torch.dtype]] = None
    shapes: Optional[Sequence[Sequence[int]]] = None
    max_cases: Optional[int] = None
    timing: timing.TimingConfig = field(default_factory=timing.TimingConfig)
    progress: bool = True
    budget_s: Optional[float] = None             # start no new case after this many seconds
    full: bool = False                           # each suite's full grid (Suite.full_cases)
    suite_timing: bool = True                    # apply each suite's timing for its case set (Suite.timing)

    @property
    def case_set(self) -> str:
        if self.quick and self.full:
            raise ValueError("quick and full exclude each other")
        return "quick" if self.quick else "full" if self.full else "default"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch.cuda.is_available() is False"
                           + ("" if torch.version.cuda else " (this torch was built without CUDA)"))
    return device


def select_cases(suite: Suite, options: RunOptions) -> list[Case]:
    dtypes = list(options.dtypes) if options.dtypes else list(suite.dtypes.get(options.device, ()))
    if options.shapes:
        cases = suite.cases_from_shapes(options.shapes, dtypes, options.device)
    else:
        cases = [c for c in suite.cases(options.device, options.case_set) if c.dtype in dtypes]
    return cases[: options.max_cases] if options.max_cases else cases


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:400]


def suite_timing(suite: Suite, options: RunOptions) -> timing.TimingConfig:
    """The run's timing with the suite's settings for this case set (unless the user chose the timing)."""
    overrides = suite.timing.get(options.case_set, {}) if options.suite_timing else {}
    return dataclasses.replace(options.timing, **overrides) if overrides else options.timing


def compare(suite: Suite, case: Case, out: torch.Tensor, expected: torch.Tensor) -> tuple:
    """(max abs err, max rel err, correct) of ``out`` against the reference.

    A suite's ``compare`` may add a fourth item: a dict of extra figures for the row
    (``sqnr_db``, ``psnr_db``).
    """
    if suite.compare is not None:
        return suite.compare(case, out, expected)
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"output shape {got} differs from the reference's {tuple(expected.shape)}")
    abs_err, rel_err = testing.max_errors(out, expected)
    tol = testing.tolerance(expected.dtype)
    correct = bool(torch.allclose(out.float(), expected.float(), atol=tol["atol"], rtol=tol["rtol"]))
    return abs_err, rel_err, correct


def _new_row(case: Case, provider: Provider) -> Row:
    return Row(op=case.op, case=case.id, shape=case.dims, dtype=dtype_name(case.dtype), device=case.device,
               provider=provider.name, kind=provider.kind, flops=case.flops, bytes=case.bytes,
               nonzero_flops=case.nonzero_flops, images=case.images)


def prepare(suite: Suite, case: Case, provider: Provider, inputs, expected) -> tuple[Row, Optional[Callable]]:
    """Build, check and warm one provider; returns its row and the callable to time (None on error)."""
    row = _new_row(case, provider)
    try:
        start = time.perf_counter()
        fn = provider.build(case, inputs)
        _sync(case.device)
        row.setup_s = time.perf_counter() - start
        start = time.perf_counter()
        out = fn()
        _sync(case.device)
        first_call = row.first_call_s = time.perf_counter() - start
        abs_err, rel_err, correct, *extra = compare(suite, case, out, expected)
        row.max_abs_err, row.max_rel_err, row.correct = abs_err, rel_err, correct
        for key, value in (extra[0] if extra else {}).items():
            setattr(row, key, value)
        del out
        if first_call < WARMUP_SKIP_S:  # a long first call has warmed caches well enough
            fn()  # warm-up: caches, lazy initialisation, autotuning
            _sync(case.device)
    except Exception as exc:
        row.status, row.error = "error", _error_text(exc)
        return row, None
    return row, fn


def _time_all(fns: list[Callable], rows: list[Row], device: str, config: timing.TimingConfig) -> None:
    mode = timing.mode_for(device, config)
    try:
        measurements = timing.measure(fns, device, config)
    except Exception:  # find out which provider failed, time the others alone
        measurements = []
        for fn, row in zip(fns, rows):
            try:
                measurements.append(timing.measure([fn], device, config)[0])
            except Exception as exc:
                row.status, row.error = "error", "while timing: " + _error_text(exc)
                measurements.append(None)
    for m, row in zip(measurements, rows):
        if m is not None:
            row.set_timing(m.median, m.p20, m.p80, m.calls, len(m.times_s), mode)


def _speedups(rows: list[Row], suite: Suite) -> None:
    def median_of(name):
        for r in rows:
            if r.provider == name and r.status == "ok" and r.median_s:
                return r.median_s
        return None

    base, peer = median_of(suite.baseline), median_of(suite.compile_peer)
    group = [(median_of(name), name) for name in suite.peer_group]
    group = [(m, name) for m, name in group if m]
    best, best_name = min(group) if group else (None, None)
    for r in rows:
        if r.status == "ok" and r.median_s:
            r.speedup_vs_eager = base / r.median_s if base else None
            r.speedup_vs_compile = peer / r.median_s if peer else None
            if best:
                r.peer, r.speedup_vs_peer = best_name, best / r.median_s


def run_case(suite: Suite, case: Case, providers: Sequence[Provider], report: Report,
             config: timing.TimingConfig, on_provider: Optional[Callable[[str], None]] = None) -> list[Row]:
    """Run one case with every provider; appends rows and skips to ``report``."""
    runnable = []
    for p in providers:
        reason = p.skip_reason(case)
        if reason:
            report.add_skip(case.op, p.name, case.device, reason, dtype_name(case.dtype))
            if on_provider:
                on_provider(p.name)
        else:
            runnable.append(p)
    if not runnable:
        return []
    inputs = suite.make_inputs(case)
    expected = suite.reference(case, inputs)
    rows, fns, timed_rows = [], [], []
    for p in runnable:
        row, fn = prepare(suite, case, p, inputs, expected)
        rows.append(row)
        if fn is None:
            continue
        if case.device == "cpu" and row.first_call_s >= config.max_run_time:
            # Adaptive repetition would stop after one such call anyway: the checked call is the sample,
            # which bounds the slow peers (torch.sparse BSR at low sparsity) to a single call per case.
            t = row.first_call_s
            row.set_timing(t, t, t, 1, 1, timing.CPU_SINGLE_CALL_MODE)
        else:
            fns.append(fn)
            timed_rows.append(row)
    del expected
    if fns:
        _time_all(fns, timed_rows, case.device, config)
    for p in runnable:
        if on_provider:
            on_provider(p.name)
    _speedups(rows, suite)
    report.rows.extend(rows)
    del fns, inputs
    if case.device == "cuda":
        torch.cuda.empty_cache()
    return rows


def suite_info(suite: Suite, providers: Sequence[Provider]) -> dict:
    return {
        "description": suite.description,
        "notes": dict(suite.notes),
        "baseline": suite.baseline,
        "compile_peer": suite.compile_peer,
        "peer_group": list(suite.peer_group),
        "peer_label": suite.peer_label,
        "targets": {f"{dev}/{dtype_name(dt) if isinstance(dt, torch.dtype) else dt}": v
                    for (dev, dt), v in suite.targets.items()},
        "providers": {p.name: p.description for p in providers},
    }


def run(options: RunOptions, on_case: Optional[Callable[[Report], None]] = None) -> Report:
    """Run the selected suites; ``on_case(report)`` is called after each case (e.g. to save progress)."""
    alloc = allocator.configure()
    options = dataclasses.replace(options, device=resolve_device(options.device))
    ops = list(options.ops) if options.ops else suite_names()
    report = Report(machine=machine.machine_info(),
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    command=" ".join(["fastgan-kernels", *sys.argv[1:]]) if sys.argv else "")
    report.settings = {
        "device": options.device,
        "timing_mode": timing.mode_for(options.device, options.timing),
        "timing": dataclasses.asdict(options.timing),
        "quick": options.quick,
        "case_set": options.case_set,
        "budget_s": options.budget_s,
        "allocator": dict(alloc, summary=allocator.describe()),
        "torch_threads": torch.get_num_threads(),
        "loadavg_start": _loadavg(),
        "cpu_busy_before_pct": machine.cpu_busy_pct(),
    }
    plan = []
    for op in ops:
        suite = get_suite(op)
        providers = suite.select_providers(options.providers)
        report.suites[op] = suite_info(suite, providers)
        config = suite_timing(suite, options)
        if config != options.timing:
            report.suites[op]["timing"] = dataclasses.asdict(config)
        plan += [(suite, case, providers, config) for case in select_cases(suite, options)]
    bar = _progress(sum(len(p) for _, _, p, _ in plan), options.progress)
    start, run_load = time.perf_counter(), machine.load_snapshot()
    try:
        for suite, case, providers, config in plan:
            if options.budget_s is not None and time.perf_counter() - start > options.budget_s:
                for p in providers:  # listed, not dropped: the reader sees what was not measured
                    report.add_skip(case.op, p.name, case.device,
                                    f"time budget of {options.budget_s:.0f} s spent before this case",
                                    dtype_name(case.dtype))
                bar.update(len(providers))
                continue
            bar.set_description(f"{case.op} {case.id}")
            case_start, case_load = time.perf_counter(), machine.load_snapshot()
            run_case(suite, case, providers, report, config, on_provider=lambda name: bar.update(1))
            info = report.suites[suite.op]
            info["duration_s"] = info.get("duration_s", 0.0) + time.perf_counter() - case_start
            _add_load(info, case_load, machine.load_snapshot())
            report.duration_s = time.perf_counter() - start
            if on_case:
                on_case(report)
    finally:
        bar.close()
    report.duration_s = time.perf_counter() - start
    report.settings["loadavg_end"] = _loadavg()
    report.settings["cpu_busy_after_pct"] = machine.cpu_busy_pct()
    report.settings["others_busy_during_pct"] = machine.others_busy_pct(run_load, machine.load_snapshot())
    for info in report.suites.values():
        info.pop("_load", None)
    return report


def _add_load(info: dict, start, end) -> None:
    """Accumulate, per suite, the CPU time other processes took while its cases ran."""
    if not start or not end:
        return
    acc = info.setdefault("_load", [0.0, 0.0, 0.0])
    for i in range(3):
        acc[i] += end[i] - start[i]
    info["others_busy_pct"] = machine.others_busy_pct((0.0, 0.0, 0.0), tuple(acc))


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


class _NoBar:
    def update(self, n=1):
        pass

    def set_description(self, text):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a progress bar is not worth a crash
        return _NoBar()
    return tqdm(total=total, unit="run", file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")

"""pytest-benchmark front end of the harness: ``pytest benchmarks --benchmark-only``.

benchmarks/conftest.py imports everything from here (hooks, options, fixtures), and an
op's test module is one line on top of its suite::

    from fastgan_kernels.bench.pytest_plugin import bench_op
    test_fused_linear = bench_op("fused_linear")

Each (case, provider) becomes one test, run through the ``benchmark`` fixture and
grouped by shape; the harness's figures (GFLOP/s, GB/s, speed-up over eager and over
torch.compile from the same session, max errors, correctness) go into ``extra_info``.
Providers that cannot run are skipped with their reason. On CUDA the fixture's timer
synchronises the device at the edges of each round (one round = many calls), never
per call. Options: ``--fastgan-device {auto,cpu,cuda}``, ``--fastgan-cases {default,full,quick}``
(default ``quick``: a few representative shapes of every suite, minutes on two cores; ``default`` is
the set ``fastgan-kernels bench`` times, about three times as many tests; ``full`` is every suite's
full grid, e.g. each sparsity x block x shape of the block-sparse suite, hours on a CPU),
``--fastgan-quick`` (= ``--fastgan-cases quick``). Unless the command line
sets them, rounds are bounded at ``--benchmark-max-time`` 0.25 s (pytest-benchmark's default is 1 s;
the harness's own bound is of that order, and the whole default set then finishes in minutes).
The session ends with the harness's summary of the rows that ran (geomean speed-ups over eager and
torch.compile, fast_p) and the suites' target lines. A call slower than the suite's max_run_time (torch.sparse BSR at low sparsity) gets
one round of ``benchmark.pedantic``, the harness's bound, instead of pytest-benchmark's five.
Suites that judge by signal-to-noise (int8) or time whole models add SQNR / PSNR and
images/s to ``extra_info``, and those with a peer group the speed-up over the fastest peer measured
in the session (``speedup_vs_peer``, ``peer``).
"""
from __future__ import annotations

import pytest

from . import allocator, machine, render, runner, timing
from .report import Report
from .registry import CASE_SETS, get_suite

allocator.configure()  # before any benchmark allocates: every provider under the same settings


def pytest_addoption(parser):
    group = parser.getgroup("fastgan", "fastgan_kernels benchmarks")
    group.addoption("--fastgan-device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="device of the benchmark cases (auto: cuda when available)")
    group.addoption("--fastgan-quick", action="store_true", help="the --quick set of cases (= --fastgan-cases quick)")
    group.addoption("--fastgan-cases", default="quick", choices=CASE_SETS,
                    help="which case set of each suite: quick (the default: a few shapes of every suite, minutes "
                         "on two cores), default (what `fastgan-kernels bench` runs: ~15 min through pytest-benchmark "
                         "on two busy cores) or full (every sparsity x block x shape, every int8 layer: hours)")


_ROUND_TIME_S = 0.25  # pytest-benchmark's max_time per test unless the command line sets one
_REPORT = pytest.StashKey[Report]()


def pytest_configure(config):
    """Shorter rounds than pytest-benchmark's 1 s default (the command line wins), and the session report."""
    if hasattr(config.option, "benchmark_max_time") and not any(
            a.startswith("--benchmark-max-time") for a in config.invocation_params.args):
        config.option.benchmark_max_time = _ROUND_TIME_S
    config.stash[_REPORT] = Report()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The harness's summary of what ran: geomean speed-ups per op/dtype/provider and the target lines."""
    report = config.stash.get(_REPORT, None)
    if report is None or not report.rows:
        return
    groups: dict = {}
    for row in report.rows:
        groups.setdefault((row.op, row.case), []).append(row)
    for (op, _), rows in groups.items():  # speed-ups from this session's medians where eager ran too
        suite = get_suite(op)
        if any(r.provider == suite.baseline for r in rows):
            runner._speedups(rows, suite)
    tr = terminalreporter
    tr.section("fastgan: speed-ups vs eager (geomeans over correct rows) and targets")
    tr.write_line(render.summary_table(report.summary(), render._table))
    for line in render.target_lines(report):
        tr.write_line(line)


def pytest_benchmark_update_machine_info(config, machine_info):
    info = machine.machine_info()
    cpu, gpu, versions = info["cpu"], info["gpu"], info["versions"]
    machine_info.update({
        "cpu_model": cpu.get("model"),
        "cpu_isa_flags": cpu.get("isa_flags"),
        "cpu_flags": cpu.get("flags"),
        "gpu_name": gpu.get("name") if gpu.get("available") else None,
        "gpu_driver": gpu.get("driver") if gpu.get("available") else None,
        "cuda_runtime": gpu.get("cuda_runtime") if gpu.get("available") else None,
        "torch_version": versions.get("torch"),
        "triton_version": versions.get("triton"),
        "torch_threads": info.get("torch_threads"),
        "allocator": allocator.describe(),
        "fastgan": info,
    })


class BenchState:
    """Session-wide: the current case's inputs and reference, and every median measured so far."""

    def __init__(self):
        self.medians: dict[tuple, float] = {}
        self._key = None
        self._data = None

    def inputs(self, suite, case):
        if self._key != (suite.op, case):
            self._data = None  # free the previous case first
            inputs = suite.make_inputs(case)
            self._data = (inputs, suite.reference(case, inputs))
            self._key = (suite.op, case)
        return self._data

    def baseline_median(self, suite, case, config: timing.TimingConfig) -> tuple[float | None, str]:
        """The baseline's median for ``case``: from this session, or timed now by the harness."""
        key = (suite.op, case, suite.baseline)
        if key in self.medians:
            return self.medians[key], "pytest-benchmark"
        inputs, expected = self.inputs(suite, case)
        row, fn = runner.prepare(suite, case, suite.provider(suite.baseline), inputs, expected)
        if fn is None:
            return None, f"baseline failed: {row.error}"
        m = timing.measure([fn], case.device, config)[0]
        return m.median, "harness (the baseline's own test did not run)"


@pytest.fixture(scope="session")
def fastgan_bench_state():
    return BenchState()


def _case_set(config) -> str:
    return "quick" if config.getoption("--fastgan-quick") else config.getoption("--fastgan-cases")


def slow_call_rounds(suite, case_set: str, first_call_s: float | None) -> int:
    """1 for a call slower than the suite's max_run_time, else 0 (an ordinary call: pytest-benchmark decides).

    The bound the harness applies (runner.run_case): a provider as slow as torch.sparse BSR at low
    sparsity gets one timed round instead of pytest-benchmark's five-round minimum.
    """
    base = timing.TimingConfig.quick() if case_set == "quick" else timing.TimingConfig()
    limit = suite.timing.get(case_set, {}).get("max_run_time", base.max_run_time)
    return int(first_call_s is not None and first_call_s >= limit)


def _device(config) -> tuple[str | None, str]:
    try:
        return runner.resolve_device(config.getoption("--fastgan-device")), ""
    except RuntimeError as exc:
        return None, str(exc)


def pytest_generate_tests(metafunc):
    op = getattr(metafunc.function, "_fastgan_op", None)
    if op is None:
        return
    suite = get_suite(op)
    device, why = _device(metafunc.config)
    if device is None:
        metafunc.parametrize("fastgan_case", [pytest.param(None, id=f"{op}-no-device",
                                                           marks=pytest.mark.skip(reason=why))])
        return
    case_set = _case_set(metafunc.config)
    options = runner.RunOptions(device=device, quick=case_set == "quick", full=case_set == "full")
    params = []
    for case in runner.select_cases(suite, options):
        for p in suite.select_providers(None):
            reason = p.skip_reason(case)
            marks = [pytest.mark.skip(reason=f"{p.name}: {reason}")] if reason else []
            if device == "cuda":
                marks.append(pytest.mark.cuda)
            params.append(pytest.param((case, p.name), id=f"{case.id}-{p.name}", marks=marks))
    metafunc.parametrize("fastgan_case", params)


def bench_op(op: str):
    """The pytest-benchmark test function for ``op``'s suite (assign it to a ``test_...`` name)."""

    def test(benchmark, fastgan_bench_state, fastgan_case, request):
        case, provider_name = fastgan_case
        suite = get_suite(op)
        provider = suite.provider(provider_name)
        state = fastgan_bench_state
        inputs, expected = state.inputs(suite, case)
        row, fn = runner.prepare(suite, case, provider, inputs, expected)
        if fn is None:
            pytest.fail(f"{provider.name} on {case.id}: {row.error}")
        benchmark.group = f"{op} {case.shape_str} {case.device}"
        if case.device == "cuda" and hasattr(benchmark, "_timer"):
            benchmark._timer = timing.synchronized_timer  # sync at round edges only
        rounds = slow_call_rounds(suite, _case_set(request.config), row.first_call_s)
        if rounds:
            benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
        else:
            benchmark(fn)
        info = {"op": op, "shape": case.dims, "dtype": str(case.dtype).replace("torch.", ""),
                "device": case.device, "provider": provider.name, "max_abs_err": row.max_abs_err,
                "max_rel_err": row.max_rel_err, "correct": row.correct, "setup_s": row.setup_s,
                "sqnr_db": row.sqnr_db, "psnr_db": row.psnr_db, "slow_call_rounds": rounds}
        stats = getattr(benchmark, "stats", None)
        if stats is not None:  # None when benchmarks are disabled
            median = stats.stats.median
            state.medians[(op, case, provider.name)] = median
            config = timing.TimingConfig.quick()
            base, base_src = state.baseline_median(suite, case, config)
            peer = state.medians.get((op, case, suite.compile_peer))
            info.update(median_s=median, gflops=case.flops / median / 1e9, gbps=case.bytes / median / 1e9,
                        speedup_vs_eager=base / median if base else None, eager_median_from=base_src,
                        speedup_vs_compile=peer / median if peer else None)
            if case.nonzero_flops is not None:
                info["nonzero_gflops"] = case.nonzero_flops / median / 1e9
            if case.images:
                info["images_per_s"] = case.images / median
            peers = [(state.medians[(op, case, name)], name) for name in suite.peer_group
                     if (op, case, name) in state.medians]
            if peers:
                info["peer"], info["speedup_vs_peer"] = min(peers)[1], min(peers)[0] / median
        benchmark.extra_info.update(info)
        if stats is not None:
            s = stats.stats
            row.set_timing(s.median, s.q1, s.q3, s.rounds, s.rounds, "pytest-benchmark")
            row.speedup_vs_eager, row.speedup_vs_compile = info["speedup_vs_eager"], info["speedup_vs_compile"]
            row.peer, row.speedup_vs_peer = info.get("peer"), info.get("speedup_vs_peer")
            report = request.config.stash[_REPORT]
            report.suites.setdefault(op, runner.suite_info(suite, suite.select_providers(None)))
            report.rows.append(row)
        snr = "".join(f", {name} {value:.1f} dB" for name, value in (("SQNR", row.sqnr_db), ("PSNR", row.psnr_db))
                      if value is not None)
        assert row.correct, (f"{provider.name} on {case.id} differs from the reference: max abs err "
                             f"{row.max_abs_err:.3g}, max rel err {row.max_rel_err:.3g}{snr}")

    test.__name__ = f"test_{op}"
    test._fastgan_op = op
    return test

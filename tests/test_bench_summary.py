"""Geometric-mean speed-up and KernelBench's fast_p, on hand-made rows."""
import math

import pytest

from fastgan_kernels.bench import summary
from fastgan_kernels.bench.report import Row


def row(provider, speedup, correct=True, status="ok", dtype="float32", kind="fastgan"):
    return Row(op="fused_linear", case="c", shape={"M": 1}, dtype=dtype, device="cpu", provider=provider, kind=kind,
               status=status, median_s=1.0, speedup_vs_eager=speedup, speedup_vs_compile=speedup and speedup / 2,
               correct=correct if status == "ok" else None, tflops=1.0)


def test_geomean():
    assert summary.geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert summary.geomean([1.5]) == pytest.approx(1.5)
    assert summary.geomean([]) is None
    assert summary.geomean([None, 4.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        summary.geomean([0.0, 1.0])


def test_fast_p_counts_correct_rows_strictly_faster_than_p():
    correct = [True, True, False, True]
    speedups = [1.0, 1.6, 3.0, 2.5]
    assert summary.fast_p(correct, speedups, 1.0) == 0.5    # 1.6 and 2.5 (1.0 is not > 1.0; 3.0 is wrong)
    assert summary.fast_p(correct, speedups, 1.5) == 0.5
    assert summary.fast_p(correct, speedups, 2.0) == 0.25
    assert summary.fast_p([], [], 1.0) is None
    assert summary.fast_p([True], [None], 1.0) == 0.0


def test_summarize_per_dtype_and_overall_with_errors_in_the_denominator():
    rows = [row("fastgan:cpu_ext", 2.0), row("fastgan:cpu_ext", 0.5),
            row("fastgan:cpu_ext", None, status="error"),
            row("fastgan:cpu_ext", 4.0, dtype="bfloat16"),
            row("eager", 1.0, kind="eager")]
    entries = {(e["provider"], e["dtype"]): e for e in summary.summarize(rows)}
    fp32 = entries[("fastgan:cpu_ext", "float32")]
    assert fp32["rows"] == 3 and fp32["correct"] == 2 and fp32["errors"] == 1
    assert fp32["geomean_vs_eager"] == pytest.approx(1.0)            # sqrt(2 * 0.5), over correct rows
    assert fp32["geomean_vs_compile"] == pytest.approx(0.5)
    assert fp32["fast_1"] == pytest.approx(1 / 3)                    # the errored row counts as a miss
    overall = entries[("fastgan:cpu_ext", summary.ALL)]
    assert overall["rows"] == 4
    assert overall["geomean_vs_eager"] == pytest.approx(math.exp((math.log(2) + math.log(0.5) + math.log(4)) / 3))
    assert entries[("eager", "float32")]["fast_1"] == 0.0


def test_target_checks_met_not_met_and_not_measured():
    rows = [row("fastgan:cpu_ext", 1.3), row("eager", 1.0, kind="eager"),
            row("eager", 1.0, kind="eager", dtype="bfloat16")]
    checks = summary.target_checks(summary.summarize(rows), {"fused_linear": {"cpu/float32": 1.15,
                                                                               "cpu/bfloat16": 1.2,
                                                                               "cuda/float16": 1.5}})
    by = {c["dtype"]: c for c in checks}
    assert by["float32"]["met"] is True and by["float32"]["provider"] == "fastgan:cpu_ext"
    assert by["bfloat16"]["met"] is None          # eager ran, no fastgan row: not measured
    assert "float16" not in by                    # no cuda rows at all in this run

"""Report round trip: rows -> JSON -> Report -> the same Markdown and text."""
import json

import pytest

from fastgan_kernels.bench import render
from fastgan_kernels.bench.report import SCHEMA, Report, Row


def make_report():
    report = Report(machine={"cpu": {"model": "Test CPU", "logical_cpus": 2, "isa_flags": ["avx2"]},
                             "gpu": {"available": False, "reason": "none here"}, "versions": {"torch": "x"},
                             "torch_threads": 2},
                    settings={"device": "cpu", "timing_mode": "cpu-blocked-autorange",
                              "timing": {"min_run_time": 1.0}, "allocator": {"summary": "mallopt(...)"}},
                    suites={"fused_linear": {"description": "d", "notes": {"compile": "static"},
                                             "targets": {"cpu/float32": 1.15}}},
                    created="2026-01-01T00:00:00+00:00", command="fastgan-kernels bench", duration_s=12.0)
    for provider, kind, median in (("eager", "eager", 2e-3), ("torch.compile", "peer", 1.8e-3),
                                   ("fastgan:cpu_ext", "fastgan", 1e-3)):
        r = Row(op="fused_linear", case="M64-K100-N256-float32", shape={"M": 64, "K": 100, "N": 256},
                dtype="float32", device="cpu", provider=provider, kind=kind, flops=2 * 64 * 100 * 256, bytes=1e5,
                max_abs_err=1e-6, max_rel_err=1e-5, correct=True, setup_s=0.5)
        r.set_timing(median, median * 0.9, median * 1.1, 100, 10, "cpu-blocked-autorange")
        r.speedup_vs_eager, r.speedup_vs_compile = 2e-3 / median, 1.8e-3 / median
        report.rows.append(r)
    report.rows.append(Row(op="fused_linear", case="M64-K100-N256-bfloat16", shape={"M": 64, "K": 100, "N": 256},
                           dtype="bfloat16", device="cpu", provider="fastgan:cpu_ext", kind="fastgan",
                           status="error", error="RuntimeError: no bf16 kernel"))
    report.add_skip("fused_linear", "fastgan:triton", "cpu", "interpreter only", "float32")
    report.add_skip("fused_linear", "fastgan:triton", "cpu", "interpreter only", "bfloat16")
    return report


def test_set_timing_derives_throughput():
    r = make_report().rows[2]
    assert r.tflops == pytest.approx(2 * 64 * 100 * 256 / 1e-3 / 1e12)
    assert r.gbps == pytest.approx(1e5 / 1e-3 / 1e9)


def test_skips_are_merged_per_provider_and_reason():
    report = make_report()
    assert len(report.skipped) == 1
    assert report.skipped[0].cases == 2 and report.skipped[0].dtypes == ["float32", "bfloat16"]


def test_json_round_trip_renders_identically(tmp_path):
    report = make_report()
    path = tmp_path / "bench.json"
    report.to_json(str(path))
    data = json.loads(path.read_text())
    assert data["schema"] == SCHEMA
    assert {e["provider"] for e in data["summary"]} == {"eager", "torch.compile", "fastgan:cpu_ext"}
    again = Report.from_json(str(path))
    assert again.rows == report.rows and again.skipped == report.skipped
    assert render.to_markdown(again) == render.to_markdown(report)
    assert render.to_text(again) == render.to_text(report)
    assert again.summary() == report.summary()


def test_markdown_has_summary_targets_skips_and_errors():
    md = render.to_markdown(make_report())
    assert md.startswith("# Benchmarks")
    assert "do not edit by hand" in md
    assert "| fused_linear | cpu | fp32 | fastgan:cpu_ext | 1 | 1 | 2.00x | 1.80x |" in md
    assert "target fused_linear cpu fp32: fastgan >= 1.15x eager (geomean): fastgan:cpu_ext 2.000x, met" in md
    assert "interpreter only" in md and "RuntimeError: no bf16 kernel" in md


def test_failures_lists_errors_and_wrong_results():
    report = make_report()
    report.rows[0].correct = False
    assert [r.provider for r in report.failures()] == ["eager", "fastgan:cpu_ext"]


def test_an_inaccurate_peer_is_reported_not_a_failure():
    report = make_report()
    peers = [r for r in report.rows if r.kind == "peer"]
    assert peers, "make_report() has a peer row"
    peers[0].correct = False
    assert peers[0] not in report.failures() and report.inaccurate_peers() == [peers[0]]


def test_from_dict_refuses_other_files():
    with pytest.raises(ValueError, match="not a fastgan benchmark report"):
        Report.from_dict({"schema": "something-else"})


def test_fmt_time_units():
    assert render.fmt_time(1.5) == "1.5 s"
    assert render.fmt_time(2.5e-3) == "2.5 ms"
    assert render.fmt_time(36e-6) == "36 us"
    assert render.fmt_time(None) == "-"


def test_load_from_other_processes_during_the_run_is_reported():
    from fastgan_kernels.bench import machine

    # 10 s of machine time, 6 s busy of which 4 s were this process: others took 20%
    assert machine.others_busy_pct((100.0, 1000.0, 50.0), (106.0, 1010.0, 54.0)) == 20.0
    assert machine.others_busy_pct((100.0, 1000.0, 50.0), (103.0, 1010.0, 54.0)) == 0.0  # clock skew: never < 0
    assert machine.others_busy_pct(None, (1.0, 2.0, 3.0)) is None
    snap = machine.load_snapshot()
    assert snap is None or (snap[1] >= snap[0] >= 0 and snap[2] >= 0)
    report = make_report()
    report.settings.update(cpu_busy_before_pct=1.0, cpu_busy_after_pct=2.0, others_busy_during_pct=40.0)
    assert "took 40% of the CPUs while this run was timing" in render.busy_warning(report)
    report.settings["others_busy_during_pct"] = 3.0
    assert render.busy_warning(report) == ""

"""CLI smoke tests: the dispatcher, ``bench`` on one tiny shape, rendering an earlier JSON report."""
import json
import os
import subprocess
import sys

import pytest

from fastgan_kernels import cli
from fastgan_kernels.bench import render
from fastgan_kernels.bench.report import Report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dispatcher_knows_every_subcommand():
    parser = cli.build_parser()
    for command in ("bench", "profile"):
        args = parser.parse_args([command] if command == "bench" else [command, "--seconds", "1"])
        assert callable(args.func)
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_bench_quick_tiny_shape_via_python_m(tmp_path):
    out_json, out_md, plots = tmp_path / "b.json", tmp_path / "b.md", tmp_path / "plots"
    cmd = [sys.executable, "-m", "fastgan_kernels.cli", "bench", "--quick", "--op", "fused_linear",
           "--shapes", "8x16x32", "--dtype", "fp32", "--provider", "fastgan:cpu_ext",
           "--provider", "fastgan:reference", "--min-run-time", "0.02", "--no-progress",
           "--json", str(out_json), "--markdown", str(out_md), "--plot", str(plots)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "geomean vs eager" in proc.stdout and "fused_linear" in proc.stdout
    data = json.loads(out_json.read_text())
    assert {r["provider"] for r in data["rows"]} >= {"eager", "fastgan:reference"}
    assert all(r["shape"] == {"M": 8, "K": 16, "N": 32} for r in data["rows"])
    assert out_md.read_text().startswith("# Benchmarks")
    assert sorted(p.name for p in plots.iterdir()) == ["fused_linear_cpu_fp32_speedup.png",
                                                       "fused_linear_cpu_fp32_tflops.png"]


def test_from_json_renders_without_running(tmp_path, capsys):
    report = Report(settings={"device": "cpu", "timing_mode": "cpu-blocked-autorange"})
    src = tmp_path / "in.json"
    report.to_json(str(src))
    md = tmp_path / "out.md"
    assert cli.main(["bench", "--from-json", str(src), "--markdown", str(md)]) == 0
    assert md.read_text() == render.to_markdown(Report.from_json(str(src)))
    assert "fastgan-kernels bench: cpu" in capsys.readouterr().out


def test_bench_on_a_missing_gpu_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: nothing to refuse")
    assert cli.main(["bench", "--device", "cuda", "--no-progress"]) == 2
    assert "torch.cuda.is_available() is False" in capsys.readouterr().err

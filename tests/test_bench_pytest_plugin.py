"""`pytest benchmarks --benchmark-only` end to end, on one tiny selection: the pytest-benchmark
options the README promises (--benchmark-json, --benchmark-autosave, --benchmark-compare) and
what the project adds to the JSON (machine_info, each row's extra_info)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELECT = "test_fused_linear and M64-K100-N256-float32 and (eager or cpu_ext)"

pytest.importorskip("pytest_benchmark")


def run_benchmarks(*extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "benchmarks", "--benchmark-only", "--fastgan-cases", "quick",
           "-k", SELECT, "-p", "no:cacheprovider", "--benchmark-max-time", "0.05", "--benchmark-min-rounds", "3",
           *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_json_autosave_and_compare(tmp_path):
    storage = f"file://{tmp_path / 'store'}"
    out = tmp_path / "bench.json"
    proc = run_benchmarks("--benchmark-json", str(out), "--benchmark-autosave", "--benchmark-storage", storage)
    # the session ends with the harness's summary: speed-ups of the rows that ran and the target lines
    assert "speed-ups vs eager" in proc.stdout and "fastgan:cpu_ext" in proc.stdout, proc.stdout[-3000:]
    assert "target fused_linear cpu fp32" in proc.stdout, proc.stdout[-3000:]
    data = json.loads(out.read_text())
    info = data["machine_info"]
    assert info["cpu_model"] and info["torch_version"] and "allocator" in info
    rows = {b["name"]: b for b in data["benchmarks"]}
    assert len(rows) == 2 and any("eager" in n for n in rows) and any("cpu_ext" in n for n in rows)
    for b in rows.values():
        assert b["group"] and b["stats"]["median"] > 0
        assert {"gflops", "speedup_vs_eager", "max_abs_err"} <= set(b["extra_info"]), b["extra_info"]
    saved = list((tmp_path / "store").rglob("*.json"))
    assert len(saved) == 1, saved

    proc = run_benchmarks("--benchmark-storage", storage, "--benchmark-compare")
    assert "0001" in proc.stdout and "NOW" in proc.stdout  # the saved run and this one, side by side

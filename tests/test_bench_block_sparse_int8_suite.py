"""The block_sparse_int8 benchmark suite: case sets, a tiny real run (layer and generator), target lines."""
import pytest
import torch

from fastgan_kernels.bench import registry, runner, timing
from fastgan_kernels.bench.report import Report, Row
from fastgan_kernels.bench.suites import _common
from fastgan_kernels.bench.suites import block_sparse_int8 as bsi
from fastgan_kernels.models import MLPGenerator

TINY = timing.TimingConfig(min_run_time=0.01, min_blocks=3, target_blocks=3, max_run_time=0.3)


@pytest.fixture(scope="module")
def suite():
    return registry.get_suite("block_sparse_int8")


def test_case_sets(suite):
    default = {tuple(c.dims.values()) for c in suite.cases("cpu", "default")}
    for s in (75, 90):
        for m in (64, 1024):
            assert (m, 4096, 4096, s, 32) in default
        for b in (1, 64):
            assert ("wide", b, s, 32) in default
    assert 0 < len(suite.cases("cpu", "quick")) < len(default) < len(suite.cases("cpu", "full"))
    case = suite.make_case({"M": 8, "K": 100, "N": 70, "sparsity": 75, "block": 16}, torch.float32, "cpu")
    assert case.nonzero_flops < case.flops and case.bytes > 0


def test_tiny_real_run_layer_and_model(suite, monkeypatch):
    monkeypatch.setitem(_common.GENERATORS, "tiny", lambda: MLPGenerator(16, (64,), 4, 1))
    layer = suite.make_case({"M": 8, "K": 40, "N": 56, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    model = suite.make_case({"model": "tiny", "batch": 4, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    wanted = [bsi.DENSE_INT8, bsi.SPARSE_FP32, "fastgan:cpu_ext", "fastgan:reference"]
    report = Report()
    for case in (layer, model):
        runner.run_case(suite, case, suite.select_providers(wanted), report, TINY)
    skipped = {s.provider for s in report.skipped}
    for case in (layer, model):
        rows = {r.provider: r for r in report.rows if r.case == case.id}
        for name in wanted:
            assert (name in rows) != (name in skipped), name
        for r in rows.values():
            assert r.status == "ok" and r.correct, (r.provider, r.error)
        assert rows[bsi.DENSE_INT8].speedup_vs_eager == pytest.approx(1.0)
        assert rows[bsi.SPARSE_FP32].speedup_vs_peer == pytest.approx(1.0)
    mrow = next(r for r in report.rows if r.case == model.id and r.provider == "fastgan:reference")
    assert mrow.psnr_db > bsi.MIN_PSNR_DB


def _row(provider, pct, vs_dense, vs_fp32, model=False):
    shape = {"model": "wide", "batch": 1} if model else {"M": 64, "K": 4096, "N": 4096}
    return Row(op=bsi.OP, case=f"c{pct}{model}", shape={**shape, "sparsity": pct, "block": 32}, dtype="float32",
               device="cpu", provider=provider, kind="fastgan", median_s=1e-3, correct=True,
               speedup_vs_eager=vs_dense, speedup_vs_peer=vs_fp32, psnr_db=40.0 if model else None)


def test_target_lines():
    rows = [_row("fastgan:cpu_ext", 90, 3.0, 2.5), _row("fastgan:cpu_ext", 90, 2.0, 1.5, model=True),
            _row("fastgan:cpu_ext", 75, 1.6, 1.2)]
    lines = {c["name"]: c for c in bsi.checks(rows, [])}
    assert lines["dense_90"]["measured"] == pytest.approx((3.0 * 2.0) ** 0.5) and lines["dense_90"]["met"] is False
    assert lines["fp32_90"]["met"] is False and lines["dense_75"]["met"] is True
    assert lines["psnr"]["met"] is True
    assert "floor" in lines and "MB" in lines["floor"]["text"]

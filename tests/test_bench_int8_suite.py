"""The int8 suite: case sets, peer availability, the SQNR / PSNR rule, tiny real runs and the target lines."""
import math
from types import SimpleNamespace

import pytest
import torch

from fastgan_kernels import backends
from fastgan_kernels._ext import cpu_features
from fastgan_kernels.bench import registry, runner, timing
from fastgan_kernels.bench.report import Report, Row
from fastgan_kernels.bench.suites import _common, _int8_checks
from fastgan_kernels.bench.suites import int8_linear as i8
from fastgan_kernels.models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS, MLPGenerator

TINY = timing.TimingConfig(min_run_time=0.01, min_blocks=3, target_blocks=3, max_run_time=0.3)
PEERS = ["eager", i8.BF16, i8.X86, i8.ONEDNN, i8.QLINEAR, i8.INT_MM, i8.TORCHAO]


@pytest.fixture(scope="module")
def suite():
    return registry.get_suite("int8_linear")


def test_case_sets(suite):
    full = suite.cases("cpu", "full")
    shapes = {tuple(c.dims.values()) for c in full}
    for m in (64, 1024):
        for k, n in SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS:
            assert (m, k, n) in shapes
    assert {(64, 4096, 4096), (1024, 4096, 4096)} <= shapes
    assert {("seed", 64), ("seed", 1024), ("wide", 64), ("wide", 1024)} <= shapes
    default = {tuple(c.dims.values()) for c in suite.cases("cpu", "default")}
    assert {(64, 4096, 4096), (1024, 4096, 4096), ("seed", 64), ("wide", 64)} <= default < shapes
    model = suite.make_case({"model": "seed", "batch": 64}, torch.float32, "cpu")
    assert model.images == 64 and model.flops == sum(2 * 64 * k * n for k, n in SEED_GENERATOR_LAYERS)
    assert model.id == "modelseed-batch64-float32"


def test_peer_availability(suite, monkeypatch):
    layer = suite.make_case({"M": 8, "K": 32, "N": 16}, torch.float32, "cpu")
    model = suite.make_case({"model": "seed", "batch": 8}, torch.float32, "cpu")
    for name in (i8.QLINEAR, i8.INT_MM):
        assert suite.provider(name).skip_reason(model) == i8.LAYER_ONLY
    assert suite.provider(i8.QLINEAR).skip_reason(layer) == ""  # torch 2.13 has it
    monkeypatch.setattr(torch.ops, "onednn", SimpleNamespace())
    assert "has no torch.ops.onednn.qlinear_pointwise" in suite.provider(i8.QLINEAR).skip_reason(layer)
    monkeypatch.undo()
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert "without oneDNN" in suite.provider(i8.QLINEAR).skip_reason(layer)
    monkeypatch.undo()
    cuda = suite.make_case({"M": 8, "K": 32, "N": 16}, torch.float32, "cuda")
    assert "CPU only" in suite.provider(i8.X86).skip_reason(cuda)
    assert "CPU only" in suite.provider(i8.QLINEAR).skip_reason(cuda)
    i8.torchao_reason.cache_clear()
    real_import = __builtins__["__import__"] if isinstance(__builtins__, dict) else __builtins__.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", no_torchao)
    assert suite.provider(i8.TORCHAO).skip_reason(layer).startswith("torchao is not installed")
    monkeypatch.undo()
    i8.torchao_reason.cache_clear()
    ext = backends.unavailable_reason("cpu_ext", torch.device("cpu"), "int8_linear_fwd")
    if ext:
        assert suite.provider("fastgan:cpu_ext").skip_reason(layer) == ext
        assert suite.provider("fastgan:cpu_ext:static").skip_reason(layer) == ext
    assert set(suite.peer_group) == {i8.X86, i8.ONEDNN, i8.QLINEAR, i8.INT_MM, i8.TORCHAO}


def test_correct_means_sqnr_or_psnr(suite):
    layer = suite.make_case({"M": 8, "K": 32, "N": 16}, torch.float32, "cpu")
    model = suite.make_case({"model": "seed", "batch": 8}, torch.float32, "cpu")
    ref = torch.randn(64, 64)
    noise = torch.randn(64, 64)
    noise *= ref.norm() / noise.norm()
    for db, ok in ((25.0, False), (31.0, True)):
        out = ref + noise * 10 ** (-db / 20)
        abs_err, _, correct, figures = i8.compare(layer, out, ref)
        assert correct is ok and figures["sqnr_db"] == pytest.approx(db, abs=1e-6) and abs_err > 0
    ref = torch.rand(4, 1, 8, 8) * 2 - 1
    _, _, correct, figures = i8.compare(model, ref + 0.02, ref)  # MSE 4e-4: PSNR 40 dB
    assert correct and figures["psnr_db"] == pytest.approx(10 * math.log10(4 / 4e-4))
    assert not i8.compare(model, ref + 0.05, ref)[2]  # 32 dB


# The peers' own accuracy floor. Without AVX512-VNNI, oneDNN's int8 kernels use u8 x s8 products
# summed in int16 (vpmaddubsw) and quantise with a reduced range to avoid its saturation, which
# costs them ~2 dB: onednn.qlinear_pointwise measured 18.6 dB on the tiny layer on an AVX2-only CPU.
_PEER_SQNR_FLOOR = 20 if cpu_features().get("avx512_vnni") else 15


def test_tiny_real_run(suite, monkeypatch):
    """Every peer on a small layer and on a tiny generator, plus the fastgan reference backend."""
    monkeypatch.setitem(_common.GENERATORS, "tiny", lambda: MLPGenerator(16, (64,), 4, 1))
    layer = suite.make_case({"M": 16, "K": 256, "N": 64}, torch.float32, "cpu")
    model = suite.make_case({"model": "tiny", "batch": 8}, torch.float32, "cpu")
    wanted = PEERS + ["fastgan:cpu_ext", "fastgan:reference", "fastgan:reference:static"]
    report = Report()
    for case in (layer, model):
        runner.run_case(suite, case, suite.select_providers(wanted), report, TINY)
    skips = {(s.provider, s.reason) for s in report.skipped}
    assert (i8.QLINEAR, i8.LAYER_ONLY) in skips and (i8.INT_MM, i8.LAYER_ONLY) in skips
    for case in (layer, model):
        rows = {r.provider: r for r in report.rows if r.case == case.id}
        for r in rows.values():  # (the kernels' own accuracy is tests/test_int8_op.py's business)
            assert r.status == "ok", (r.provider, r.error)
            assert r.peer in i8.INT8_PEERS and r.speedup_vs_peer > 0 and r.sqnr_db is not None, r.provider
            assert r.sqnr_db > _PEER_SQNR_FLOOR or r.provider.startswith("fastgan:cpu_ext"), (r.provider, r.sqnr_db)
        best = min((rows[p].median_s, p) for p in i8.INT8_PEERS if p in rows)[1]
        assert rows[best].speedup_vs_peer == pytest.approx(1.0) and rows[best].peer == best
        for name in ("eager", i8.BF16, "fastgan:reference"):
            assert rows[name].correct, (name, rows[name].sqnr_db, rows[name].psnr_db)
        if case is model:
            assert rows["fastgan:reference:static"].psnr_db > 35 and rows["eager"].psnr_db == math.inf
            assert rows["fastgan:reference"].images_per_s > 0
    again = Report.from_dict(report.to_dict())
    assert again.rows == report.rows  # infinite PSNR survives JSON


def _row(provider, shape, vs_eager, vs_peer, psnr=None, correct=True, kind="fastgan"):
    return Row(op=i8.OP, case=str(shape), shape=shape, dtype="float32", device="cpu", provider=provider, kind=kind,
               median_s=1.0, correct=correct, speedup_vs_eager=vs_eager, speedup_vs_peer=vs_peer, peer=i8.QLINEAR,
               psnr_db=psnr, images_per_s=100.0 if "model" in shape else None)


def test_target_lines():
    p = "fastgan:cpu_ext"
    rows = [_row(p, {"M": 64, "K": 4096, "N": 4096}, 13.0, 1.5), _row(p, {"M": 1024, "K": 4096, "N": 4096}, 11.0, 1.2),
            _row(p, {"M": 64, "K": 100, "N": 256}, 3.0, 1.4),
            _row(p, {"model": "seed", "batch": 64}, 4.0, 1.6, psnr=40.0),
            _row(p, {"model": "wide", "batch": 64}, 4.0, 1.7, psnr=36.0)]
    lines = {c["name"]: c for c in _int8_checks.checks(rows, [])}
    big = lines["vs_eager_big"]
    assert big["met"] is False and "M=64 13.00x, M=1024 11.00x" in big["text"] and big["measured"] == 11.0
    assert lines["vs_peer_layers"]["met"] is True
    assert lines["vs_peer_layers"]["measured"] == pytest.approx((1.5 * 1.2 * 1.4) ** (1 / 3))
    assert "onednn.qlinear_pointwise in 3 rows" in lines["vs_peer_layers"]["text"]
    models = lines["vs_peer_models"]
    assert models["met"] is True and "PSNR >= 36.0 dB" in models["text"]
    rows[-1].psnr_db, rows[-1].correct = 30.0, False  # below 35 dB: the target is not met
    assert _int8_checks.checks(rows, [])[2]["met"] is False
    eager_only = [_row("eager", {"M": 64, "K": 4096, "N": 4096}, 1.0, 0.1, kind="eager")]
    skipped = [SimpleNamespace(device="cpu", provider="fastgan:cpu_ext", reason="no int8 kernel yet")]
    lines = _int8_checks.checks(eager_only, skipped)
    assert [c["name"] for c in lines] == ["vs_eager_big", "vs_peer_layers"]
    assert all(c["met"] is None and "NOT MEASURED" in c["text"] and "no int8 kernel yet" in c["text"] for c in lines)

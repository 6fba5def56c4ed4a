"""The generator suite: registered, cases per set, and its target lines computed from rows."""
from types import SimpleNamespace

from fastgan_kernels.bench import registry
from fastgan_kernels.bench.suites import _generator_checks as gc


def _row(model, batch, provider, median_s, psnr=60.0, correct=True):
    return SimpleNamespace(case=f"{model}{batch}", shape={"model": model, "batch": batch}, provider=provider,
                           median_s=median_s, status="ok", correct=correct, psnr_db=psnr, device="cpu",
                           dtype="float32", kind="fastgan" if provider.startswith("fastgan") else "peer")


def test_registered_with_small_default_grid():
    suite = registry.get_suite("generator")
    assert "generator" in registry.suite_names()
    default = [(c.dims["model"], c.dims["batch"]) for c in suite.cases("cpu", "default")]
    assert default == [("seed", 1), ("seed", 8), ("seed", 64), ("seed", 256), ("wide", 1), ("wide", 64)]
    assert [c.dims["batch"] for c in suite.cases("cpu", "quick")] == [1, 8]
    assert ("wide", 256) in [(c.dims["model"], c.dims["batch"]) for c in suite.cases("cpu", "full")]
    names = {p.name for p in suite.providers}
    assert {gc.ORT_FP32, gc.ORT_INT8, gc.CHAIN_FP32, gc.CHAIN_BSR, "torch.compile", "eager"} <= names


def test_target_lines_from_rows():
    rows = [_row("seed", 1, gc.ORT_INT8, 20e-6), _row("seed", 1, gc.CHAIN_STATIC, 8e-6),
            _row("seed", 1, gc.CHAIN_DYNAMIC, 12e-6, psnr=30.0), _row("seed", 1, gc.ORT_FP32, 40e-6),
            _row("seed", 1, gc.CHAIN_FP32, 20e-6), _row("seed", 1, "eager", 80e-6)]
    lines = {(c["provider"], c["name"], c["target"]): c for c in gc._target_lines("cpu", "float32", rows, [])}
    static = lines[(gc.CHAIN_STATIC, "vs_peer", 2.0)]
    assert static["met"] is True and abs(static["measured"] - 2.5) < 1e-9
    assert lines[(gc.CHAIN_DYNAMIC, "vs_peer", 2.0)]["met"] is False  # 1.67x
    assert lines[(gc.CHAIN_FP32, "vs_peer", 1.5)]["met"] is True      # 2x ORT fp32
    assert lines[(gc.CHAIN_FP32, "vs_peer", 3.0)]["met"] is True      # 4x eager
    psnr = lines[(None, "psnr", 35.0)]
    assert psnr["met"] is False and psnr["measured"] == 30.0
    skipped = [SimpleNamespace(provider=gc.ORT_INT8, device="cpu", reason="ONNX Runtime is not installed")]
    no_peer = [r for r in rows if r.provider != gc.ORT_INT8]
    text = [c["text"] for c in gc._target_lines("cpu", "float32", no_peer, skipped) if c["met"] is None]
    assert any("NOT MEASURED (ONNX Runtime is not installed)" in t for t in text)

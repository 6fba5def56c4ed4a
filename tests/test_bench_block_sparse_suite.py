"""The block-sparse suites: case sets, work counts, providers, tiny real runs, target and break-even lines."""
import pytest
import torch

from fastgan_kernels import backends
from fastgan_kernels.bench import registry, runner, timing
from fastgan_kernels.bench.report import Report, Row
from fastgan_kernels.bench.suites import _common
from fastgan_kernels.bench.suites import block_sparse_linear as bs
from fastgan_kernels.bench.suites import block_sparse_sweep as sweep
from fastgan_kernels.models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS, MLPGenerator

TINY = timing.TimingConfig(min_run_time=0.01, min_blocks=3, target_blocks=3, max_run_time=0.3)


@pytest.fixture(scope="module")
def suite():
    return registry.get_suite("block_sparse_linear")


@pytest.fixture
def tiny_generator(monkeypatch):
    monkeypatch.setitem(_common.GENERATORS, "tiny", lambda: MLPGenerator(16, (32,), 4, 1))
    return "tiny"


def _dims(case):
    return tuple(case.dims.values())


def test_case_sets(suite):
    full = suite.cases("cpu", "full")
    layers = {_dims(c) for c in full if "M" in c.dims}
    for m in (64, 1024):
        for k, n in SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS:
            for s in (50, 75, 90, 95):
                for b in (16, 32, 64):
                    assert (m, k, n, s, b) in layers
    assert (1024, 4096, 4096, 90, 64) in layers
    assert {_dims(c) for c in full if "model" in c.dims} == {("wide", 64, 90, 32), ("wide", 1024, 90, 32)}
    default = suite.cases("cpu", "default")
    assert {c.dims["block"] for c in default} == {32}
    assert {c.dims["sparsity"] for c in default} == {50, 75, 90, 95}
    assert ("wide", 64, 90, 32) in {_dims(c) for c in default}
    assert 0 < len(suite.cases("cpu", "quick")) < len(default) < len(full)
    assert {c.dtype for c in full} == {torch.float32}
    with pytest.raises(ValueError, match="case set"):
        suite.cases("cpu", "huge")


def test_work_counts_match_the_pruned_weight(suite):
    case = suite.make_case({"M": 8, "K": 100, "N": 70, "sparsity": 75, "block": 16}, torch.float32, "cpu")
    assert case.id == "M8-K100-N70-sparsity75-block16-float32"
    x, w, b, weight = bs.pruned_layer(8, 100, 70, 0.75, 16)
    assert weight.nnz_blocks == bs.kept_blocks(70, 100, 16, 0.75) == round(0.25 * 5 * 7)
    assert case.flops == 2 * 8 * 100 * 70 and case.nonzero_flops == 2 * 8 * weight.nnz_blocks * 16 * 16
    assert torch.equal(w, weight.to_dense()) and (w == 0).float().mean() > 0.6
    with pytest.raises(ValueError):
        suite.make_case({"M": 8, "K": 100, "N": 70, "sparsity": 75, "block": 24}, torch.float32, "cpu")
    cases = runner.select_cases(suite, runner.RunOptions(shapes=[(8, 100, 70, 90, 32)], dtypes=[torch.float32]))
    assert [c.id for c in cases] == ["M8-K100-N70-sparsity90-block32-float32"]


def test_providers_and_skip_reasons(suite):
    names = [p.name for p in suite.select_providers()]
    assert names[:2] == ["eager", bs.TORCH_BSR]
    assert {"fastgan:cpu_ext", "fastgan:triton", "fastgan:cuda_ext"} <= set(names)
    case = suite.make_case({"M": 4, "K": 32, "N": 32, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    assert suite.provider("fastgan:cpu_ext").skip_reason(case) == \
        backends.unavailable_reason("cpu_ext", torch.device("cpu"), "bsr_linear_fwd")
    assert "correctness tool" in suite.provider("fastgan:triton").skip_reason(case)
    assert suite.provider(bs.TORCH_BSR).skip_reason(case) == ""
    assert suite.peer_group == (bs.TORCH_BSR,)


def test_tiny_real_run_layer_and_model(suite, tiny_generator):
    """A ragged layer (K, N not whole blocks: torch BSR gets padded operands) and a tiny pruned generator."""
    layer = suite.make_case({"M": 8, "K": 40, "N": 56, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    model = suite.make_case({"model": tiny_generator, "batch": 4, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    assert model.images == 4 and model.nonzero_flops < model.flops
    wanted = ["eager", bs.TORCH_BSR, "fastgan:cpu_ext", "fastgan:reference"]
    report = Report()
    for case in (layer, model):
        runner.run_case(suite, case, suite.select_providers(wanted), report, TINY)
    skipped = {s.provider for s in report.skipped}
    for case in (layer, model):
        rows = {r.provider: r for r in report.rows if r.case == case.id}
        for name in wanted:
            assert (name in rows) != (name in skipped), name
        for r in rows.values():
            assert r.status == "ok" and r.correct, (r.provider, r.error, r.max_abs_err)
            assert r.nonzero_tflops < r.tflops and r.speedup_vs_peer > 0 and r.peer == bs.TORCH_BSR
        assert rows[bs.TORCH_BSR].speedup_vs_peer == pytest.approx(1.0)
    mrow = next(r for r in report.rows if r.case == model.id and r.provider == "fastgan:reference")
    assert mrow.images_per_s == pytest.approx(4 / mrow.median_s) and mrow.psnr_db > 60
    assert Report.from_dict(report.to_dict()).rows == report.rows


def _row(provider, sparsity, speedup, vs_bsr, kind="fastgan", correct=True, m=64):
    return Row(op=bs.OP, case=f"c{m}-{sparsity}", shape={"M": m, "K": 64, "N": 64, "sparsity": sparsity, "block": 32},
               dtype="float32", device="cpu", provider=provider, kind=kind, median_s=1.0, correct=correct,
               speedup_vs_eager=speedup, speedup_vs_peer=vs_bsr, peer=bs.TORCH_BSR)


def test_target_lines():
    rows = [_row("fastgan:cpu_ext", 90, 8.0, 20.0), _row("fastgan:cpu_ext", 90, 6.5, 12.0, m=1024),
            _row("fastgan:cpu_ext", 75, 2.0, 8.0), _row("fastgan:cpu_ext", 50, 1.5, 4.0),
            _row("fastgan:cpu_ext", 75, 9.0, 9.0, correct=False), _row("eager", 90, 1.0, 3.0, kind="eager")]
    lines = {c["name"]: c for c in bs.checks(rows, [])}
    assert lines["sparsity_90"]["met"] is True and lines["sparsity_90"]["measured"] == pytest.approx((8 * 6.5) ** 0.5)
    assert "90% sparsity: fastgan >= 7x eager dense" in lines["sparsity_90"]["text"]
    assert lines["sparsity_75"]["met"] is False and "NOT met" in lines["sparsity_75"]["text"]  # the wrong row left out
    assert lines["sparsity_50"]["met"] == "info" and "no target" not in lines["sparsity_50"]["text"]
    assert lines["vs_torch_bsr"]["met"] is False and lines["vs_torch_bsr"]["target"] == 10.0
    skipped = [type("S", (), {"device": "cpu", "provider": "fastgan:cpu_ext", "reason": "no kernel yet"})()]
    lines = bs.checks([_row("eager", 90, 1.0, 3.0, kind="eager")], skipped)
    assert [c["met"] for c in lines] == [None, None] and all("no kernel yet" in c["text"] for c in lines)


def test_break_even_crossing():
    assert sweep.crossing([(0.1, 0.5), (0.2, 0.8), (0.3, 1.25), (0.4, 1.6)])[1] == "interpolated"
    value, _ = sweep.crossing([(0.2, 0.8), (0.3, 1.25)])
    assert value == pytest.approx(0.25)  # log-symmetric around 1x
    assert sweep.crossing([(0.1, 1.1), (0.2, 1.3)]) == (0.1, "below")
    assert sweep.crossing([(0.1, 0.5), (0.2, 0.9)]) == (None, "above")
    noisy = [(0.1, 0.9), (0.2, 1.1), (0.3, 0.95), (0.4, 1.2)]  # the last crossing from below counts
    assert sweep.crossing(noisy)[0] == pytest.approx(0.3 + 0.1 * 0.2, abs=0.02)
    rows = [Row(op=sweep.OP, case=f"{m}-{s}", shape={"M": m, "K": 8, "N": 8, "sparsity": s, "block": 32},
                dtype="float32", device="cpu", provider="fastgan:cpu_ext", kind="fastgan", median_s=1.0, correct=True,
                speedup_vs_peer=r) for m, pts in ((64, ((20, 0.8), (30, 1.25))), (1024, ((20, 0.8), (30, 1.25))))
            for s, r in pts]
    (line,) = sweep.checks(rows, [])
    assert line["measured"] == pytest.approx(0.25) and "from sparsity 0.25" in line["text"]


def test_tiny_real_sweep_run():
    suite = registry.get_suite("block_sparse_sweep")
    assert {c.dims["block"] for c in suite.cases("cpu", "full")} == {32}
    assert {c.dims["sparsity"] for c in suite.cases("cpu", "default")} == {10, 20, 30, 40, 50, 60}
    options = runner.RunOptions(ops=["block_sparse_sweep"], shapes=[(8, 64, 64, 20, 32), (8, 64, 64, 60, 32)],
                                dtypes=[torch.float32], providers=["eager", sweep.DENSE, "fastgan:reference"],
                                timing=TINY, progress=False)
    report = runner.run(options)
    assert all(r.status == "ok" and r.correct for r in report.rows), [(r.provider, r.error) for r in report.rows]
    assert {r.peer for r in report.rows} == {sweep.DENSE}
    (line,) = [c for c in report.target_checks() if c["name"] == "break_even"]
    assert "fastgan:reference beats" in line["text"]


def test_a_call_longer_than_max_run_time_is_timed_once(suite):
    """The slow peers' bound: a checked call past max_run_time is the provider's single sample."""
    import time as _time

    def slow(case, inputs):
        return lambda: (_time.sleep(0.12), bs.eager_build(case, inputs)())[1]

    config = timing.TimingConfig(min_run_time=0.01, min_blocks=3, target_blocks=3, max_run_time=0.1)
    case = suite.make_case({"M": 4, "K": 32, "N": 32, "sparsity": 50, "block": 16}, torch.float32, "cpu")
    report = Report()
    rows = runner.run_case(suite, case, [suite.provider("eager"), registry.Provider("slow", "peer", slow)],
                           report, config)
    assert rows[1].samples == 1 and rows[1].calls == 1 and rows[1].timing_mode == timing.CPU_SINGLE_CALL_MODE
    assert rows[1].median_s == rows[1].first_call_s >= 0.12
    assert rows[0].samples >= 3 and rows[0].timing_mode == timing.CPU_MODE


def test_pytest_plugin_bounds_slow_calls_like_the_harness(suite):
    from fastgan_kernels.bench.pytest_plugin import slow_call_rounds

    assert suite.timing["default"]["max_run_time"] == 1.5
    assert slow_call_rounds(suite, "default", 0.5) == 0 and slow_call_rounds(suite, "default", 2.0) == 1
    assert slow_call_rounds(suite, "full", 2.0) == 0 and slow_call_rounds(suite, "full", 3.5) == 1
    assert slow_call_rounds(suite, "quick", 1.2) == 1 and slow_call_rounds(suite, "quick", None) == 0

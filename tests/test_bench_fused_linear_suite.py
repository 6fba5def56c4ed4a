"""The fused_linear suite: its cases and providers, and a tiny real CPU run through the runner."""
import pytest
import torch

from fastgan_kernels import backends
from fastgan_kernels.bench import registry, runner, timing
from fastgan_kernels.bench.report import Report
from fastgan_kernels.models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS

TINY = timing.TimingConfig(min_run_time=0.02, min_blocks=3, target_blocks=5, max_run_time=0.5)


@pytest.fixture(scope="module")
def suite():
    return registry.get_suite("fused_linear")


def test_registry_lists_the_suite(suite):
    assert "fused_linear" in registry.suite_names()
    assert suite.op == "fused_linear" and suite.baseline == "eager"
    with pytest.raises(ValueError, match="no benchmark suite"):
        registry.get_suite("nope")


def test_default_cases_cover_the_generator_layers(suite):
    cases = suite.default_cases("cpu", False)
    shapes = {(c.dims["M"], c.dims["K"], c.dims["N"]) for c in cases}
    for k, n in SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS:
        assert (64, k, n) in shapes and (1024, k, n) in shapes
    assert (1024, 4096, 4096) in shapes
    assert {c.dtype for c in cases} == {torch.float32, torch.bfloat16}
    assert {c.dtype for c in suite.default_cases("cuda", False)} == {torch.float16, torch.bfloat16}
    quick = suite.default_cases("cpu", True)
    assert 0 < len(quick) < len(cases)
    c = suite.make_case({"M": 64, "K": 100, "N": 256}, torch.float32, "cpu")
    assert c.flops == 2 * 64 * 100 * 256
    assert c.bytes == (64 * 100 + 256 * 100 + 256 + 64 * 256) * 4
    assert c.id == "M64-K100-N256-float32"


def test_providers_and_skip_reasons(suite):
    names = [p.name for p in suite.select_providers()]
    assert names[:2] == ["eager", "torch.compile"]
    assert {"fastgan:cpu_ext", "fastgan:triton", "fastgan:cuda_ext"} <= set(names)
    assert "fastgan:reference" not in names  # asked for explicitly only
    case = suite.make_case({"M": 4, "K": 8, "N": 16}, torch.float32, "cpu")
    assert "correctness tool" in suite.provider("fastgan:triton").skip_reason(case)
    assert suite.provider("fastgan:cuda_ext").skip_reason(case) == \
        backends.unavailable_reason("cuda_ext", torch.device("cpu"), "fused_linear_fwd")
    assert suite.provider("fastgan:cpu_ext").skip_reason(case) == \
        backends.unavailable_reason("cpu_ext", torch.device("cpu"), "fused_linear_fwd")
    with pytest.raises(ValueError, match="unknown provider"):
        suite.select_providers(["bogus"])


def test_shapes_option_builds_cases(suite):
    cases = runner.select_cases(suite, runner.RunOptions(shapes=[(8, 16, 32)], dtypes=[torch.float32]))
    assert [c.id for c in cases] == ["M8-K16-N32-float32"]
    with pytest.raises(ValueError, match="3 sizes"):
        suite.cases_from_shapes([(8, 16)], [torch.float32], "cpu")


def test_tiny_real_cpu_run(suite):
    """One small case, every default provider plus the reference backend, measured for real."""
    options = runner.RunOptions(ops=["fused_linear"], device="cpu", shapes=[(16, 32, 48)], dtypes=[torch.float32],
                                providers=[p.name for p in suite.select_providers()] + ["fastgan:reference"],
                                timing=TINY, progress=False)
    report = runner.run(options)
    rows = {r.provider: r for r in report.rows}
    skipped = {s.provider: s.reason for s in report.skipped}
    for name in ("eager", "torch.compile", "fastgan:cpu_ext", "fastgan:triton", "fastgan:cuda_ext",
                 "fastgan:reference"):
        assert (name in rows) != (name in skipped), name  # each provider either ran or is skipped with a reason
    assert "fastgan:triton" in skipped and skipped["fastgan:triton"]
    for name in ("eager", "torch.compile", "fastgan:reference"):
        r = rows[name]
        assert r.status == "ok", r.error
        assert r.correct and r.max_abs_err < 1e-4
        assert r.median_s > 0 and r.p20_s <= r.median_s <= r.p80_s
        assert r.samples >= 3 and r.timing_mode == timing.CPU_MODE
        assert r.tflops > 0 and r.gbps > 0
    assert rows["eager"].speedup_vs_eager == pytest.approx(1.0)
    assert rows["torch.compile"].speedup_vs_compile == pytest.approx(1.0)
    assert rows["torch.compile"].setup_s > 0
    assert report.settings["allocator"]["mmap_threshold"] == 64 << 20
    assert report.settings["timing_mode"] == timing.CPU_MODE
    assert "compile" in report.suites["fused_linear"]["notes"]
    # the whole thing survives JSON
    assert Report.from_dict(report.to_dict()).rows == report.rows


def test_a_failing_provider_becomes_an_error_row(suite, monkeypatch):
    def boom(case, inputs):
        raise RuntimeError("kernel exploded")

    broken = registry.Provider("broken", "fastgan", boom)
    report = Report()
    case = suite.make_case({"M": 4, "K": 8, "N": 16}, torch.float32, "cpu")
    rows = runner.run_case(suite, case, [suite.provider("eager"), broken], report, TINY)
    assert rows[1].status == "error" and "kernel exploded" in rows[1].error
    assert rows[0].status == "ok" and rows[0].speedup_vs_eager == pytest.approx(1.0)
    assert report.failures() == [rows[1]]


def test_budget_lists_unrun_cases_as_skipped(suite):
    def options(budget):
        return runner.RunOptions(ops=["fused_linear"], device="cpu", shapes=[(4, 8, 16), (8, 8, 16)],
                                 dtypes=[torch.float32], providers=["eager"], timing=TINY, progress=False,
                                 budget_s=budget)

    seen = []
    report = runner.run(options(60.0), on_case=lambda rep: seen.append(len(rep.rows)))
    assert seen == [1, 2] and not report.skipped
    report = runner.run(options(0.0))
    assert not report.rows
    assert [(s.reason, s.cases) for s in report.skipped] == [("time budget of 0 s spent before this case", 2)]


def test_new_activation_rows_and_their_target_line(suite):
    """gelu / gelu_tanh / silu / elu rows (fp32 on the CPU) run against eager F.linear + the activation,
    and the suite's own check prints their geomean target line."""
    from fastgan_kernels.bench.suites import fused_linear as fl_suite

    cases = [c for c in suite.default_cases("cpu", False) if "act" in c.dims]
    assert {c.dims["act"] for c in cases} == set(fl_suite.NEW_ACTS)
    assert {c.dtype for c in cases} == {torch.float32}
    assert {(c.dims["M"], c.dims["K"], c.dims["N"]) for c in cases} == {(m, k, n) for m in (64, 1024)
                                                                         for k, n in SEED_GENERATOR_LAYERS}
    report = Report()
    rows = []
    for act in fl_suite.NEW_ACTS:
        case = suite.make_case({"M": 5, "K": 16, "N": 24, "act": act}, torch.float32, "cpu")
        assert case.id == f"M5-K16-N24-act{act}-float32"
        rows += runner.run_case(suite, case, [suite.provider("eager"), suite.provider("fastgan:reference")], report,
                                TINY)
    assert all(r.status == "ok" and r.correct for r in rows), [r.error for r in rows]
    lines = suite.checks(rows, [])
    assert len(lines) == 1 and lines[0]["name"] == "new_activations" and lines[0]["provider"] == "fastgan:reference"
    assert lines[0]["text"].startswith("target fused_linear cpu fp32: new activations (gelu, gelu_tanh, silu, elu) "
                                       "fused >= 1.15x eager (geomean over the suite's shapes): fastgan:reference")
    assert suite.checks([r for r in rows if r.provider == "eager"], [])[0]["met"] is None  # NOT MEASURED

"""generator: whole generators per request, as a generation service runs them.

Cases (model, batch): the seed generator (100-256-512-784) at batch 1, 8, 64, 256 and the wide one
(128-1024-2048-4096-12288) at batch 1 and 64 (default); quick: the seed generator at 1 and 8; the
full grid (``--full``, ``pytest benchmarks``) adds the wide generator at 8 and 256.

Providers, all on the same fixed-seed fp32 generator, converted once outside the timing:
eager fp32; ``torch.compile`` of the eager model; the per-layer fastgan modules (``fuse``,
``quantize`` static / dynamic); the compiled generator (``compile_generator``: one
``fastgan::mlp_chain`` call) on the fp32, bf16, int8 static, int8 dynamic and 90%-pruned
block-sparse models; ONNX Runtime fp32 and int8 (``quantize_dynamic``) on the exported model.

Every row reports the PSNR of its images against eager fp32 (data range 2). A row is correct at
PSNR >= 35 dB, except the block-sparse one, which computes a different (pruned) model: it is
checked against that pruned model in eager PyTorch (PSNR >= 60 dB) and its PSNR against the
dense fp32 model is reported as it is.
"""
from __future__ import annotations

import functools
from types import SimpleNamespace

import torch

from ... import _ext, compile_generator, fuse, metrics, prune, quantize
from ...models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS
from ..registry import Case, Provider, Suite
from . import _common, _onnx
from ._generator_checks import ORT_FP32, ORT_INT8, checks

OP = "generator"
MODELS = {"default": (("seed", 1), ("seed", 8), ("seed", 64), ("seed", 256), ("wide", 1), ("wide", 64)),
          "quick": (("seed", 1), ("seed", 8)),
          "full": (("seed", 1), ("seed", 8), ("seed", 64), ("seed", 256),
                   ("wide", 1), ("wide", 8), ("wide", 64), ("wide", 256))}
LAYERS = {"seed": SEED_GENERATOR_LAYERS, "wide": WIDE_GENERATOR_LAYERS}
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32,)}
MIN_PSNR_DB, MIN_PRUNED_PSNR_DB = 35.0, 60.0
SPARSITY, BLOCK = 0.9, (32, 32)
CALIBRATION_BATCHES, CALIBRATION_BATCH = 2, 64


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    name, batch = dims["model"], dims["batch"]
    layers = LAYERS[name]
    return Case(OP, (("model", name), ("batch", batch)), dtype, device,
                flops=sum(2.0 * batch * k * n for k, n in layers),
                bytes=float(sum(4 * k * n + 4 * n + 4 * batch * (k + n) for k, n in layers)), images=batch)


def _cases(mode: str, device: str) -> list[Case]:
    return [make_case({"model": m, "batch": b}, dt, device) for m, b in MODELS[mode] for dt in DTYPES[device]]


def default_cases(device: str, quick: bool) -> list[Case]:
    return _cases("quick" if quick else "default", device)


def full_cases(device: str) -> list[Case]:
    return _cases("full", device)


# ----------------------------------------------------------------------------- models, converted once
@functools.lru_cache(maxsize=None)
def _model(name: str, kind: str, device: str):
    """The fixed-seed generator ``name`` converted as ``kind`` (cached: the wide one is large)."""
    gen = _common.generator(name, device=device)
    if kind == "fp32":
        return gen
    if kind == "fuse":
        return fuse(gen)
    if kind in ("static", "dynamic"):
        cal = [_common.latent(gen, CALIBRATION_BATCH, seed=1 + i, device=device) for i in range(CALIBRATION_BATCHES)]
        return quantize(gen, calibration=cal if kind == "static" else None, mode=kind)[0].eval()
    if kind == "pruned":
        return prune(gen, sparsity=SPARSITY, block=BLOCK)[0].eval()
    raise ValueError(kind)


@functools.lru_cache(maxsize=None)
def _compiled(name: str, kind: str, device: str):
    if kind == "bf16":
        return compile_generator(_model(name, "fp32", device), dtype=torch.bfloat16)
    return compile_generator(_model(name, kind, device))


def make_inputs(case: Case):
    gen = _model(case.dims["model"], "fp32", case.device)
    return SimpleNamespace(gen=gen, z=_common.latent(gen, case.dims["batch"], device=case.device))


def reference(case: Case, inputs) -> torch.Tensor:
    with torch.no_grad():
        return inputs.gen(inputs.z)


def compare(case: Case, out: torch.Tensor, expected: torch.Tensor):
    abs_err, rel_err, _ = _common.float_errors(case, out, expected)
    figures = _common.snr_figures(out, expected, True)
    own = getattr(out, "fastgan_reference", None)  # the pruned model's own eager output
    if own is not None:
        ok = metrics.psnr(own.float(), out.float(), _common.PSNR_RANGE) >= MIN_PRUNED_PSNR_DB
    else:
        ok = figures["psnr_db"] >= MIN_PSNR_DB
    return abs_err, rel_err, bool(ok), figures


# ----------------------------------------------------------------------------- providers
def _no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()
    return run


def eager_build(case, inputs):
    gen, z = inputs.gen, inputs.z
    return _no_grad(lambda: gen(z))


def compile_build(case, inputs):
    torch.compiler.reset()
    model = torch.compile(inputs.gen, dynamic=False, fullgraph=True)
    z = inputs.z
    run = _no_grad(lambda: model(z))
    run()  # compile now (set-up, outside the timing)
    return run


def per_layer(kind: str):
    def build(case, inputs):
        model, z = _model(case.dims["model"], kind, case.device), inputs.z
        return _no_grad(lambda: model(z))
    return build


def chain(kind: str):
    def build(case, inputs):
        compiled, z = _compiled(case.dims["model"], kind, case.device), inputs.z
        if kind != "pruned":
            return lambda: compiled(z)
        with torch.no_grad():
            own = _model(case.dims["model"], "pruned", case.device)(z)
        checked = []

        def run():
            y = compiled(z)
            if not checked:  # the runner checks the first call's output: mark it with the pruned reference
                checked.append(True)
                y.fastgan_reference = own
            return y
        return run
    return build


def chain_skip(case) -> str:
    if case.device == "cpu" and not _ext.has_kernel("mlp_chain", "CPU"):
        return _ext.REASON or "the extension was built without fastgan_ext::mlp_chain"
    return ""


def ort(int8: bool):
    def build(case, inputs):
        name = case.dims["model"]
        path = _onnx.model_path(name, _model(name, "fp32", "cpu"), LAYERS[name][0][0], int8)
        return _onnx.session_call(path, inputs.z)

    def skip(case):
        return "ONNX Runtime's CPU provider only" if case.device != "cpu" else _onnx.reason()
    return Provider(ORT_INT8 if int8 else ORT_FP32, "peer", build, skip,
                    description="ONNX Runtime (CPU provider, intra_op threads = torch's) on torch.onnx.export(model, "
                                "dynamo=False)" + ("; int8 via onnxruntime.quantization.quantize_dynamic(QInt8)"
                                                   if int8 else ""))


def _chain_provider(kind: str, label: str, what: str) -> Provider:
    return Provider(f"fastgan:chain {label}", "fastgan", chain(kind), chain_skip,
                    description=f"compile_generator({what}): the whole chain in one fastgan::mlp_chain call")


SUITE = Suite(
    op=OP,
    description="whole generators per request (batch 1 to 256): the compiled generator against eager, "
                "torch.compile, the per-layer fastgan modules and ONNX Runtime",
    shape_names=("model", "batch"),
    make_case=make_case,
    default_cases=default_cases,
    full_cases=full_cases,
    make_inputs=make_inputs,
    reference=reference,
    compare=compare,
    providers=[
        Provider("eager", "eager", eager_build, description="the fp32 generator in eager PyTorch (no_grad)"),
        Provider("torch.compile", "peer", compile_build,
                 description="torch.compile(model, dynamic=False, fullgraph=True), compiled per case"),
        Provider("fastgan:fuse (per layer)", "fastgan", per_layer("fuse"), description="fuse(model): FusedLinear"),
        Provider("fastgan:int8 static (per layer)", "fastgan", per_layer("static"),
                 description="quantize(model, mode='static'): Int8Linear per layer"),
        Provider("fastgan:int8 dynamic (per layer)", "fastgan", per_layer("dynamic"),
                 description="quantize(model, mode='dynamic'): Int8Linear per layer"),
        _chain_provider("fp32", "fp32", "model"),
        _chain_provider("bf16", "bf16", "model, dtype=torch.bfloat16"),
        _chain_provider("static", "int8 static", "quantize(model, mode='static')"),
        _chain_provider("dynamic", "int8 dynamic", "quantize(model, mode='dynamic')"),
        _chain_provider("pruned", "block-sparse 90%", f"prune(model, {SPARSITY}, block={BLOCK})"),
        ort(int8=False),
        ort(int8=True),
    ],
    dtypes=DTYPES,
    notes={"reference": "the fp32 generator in eager PyTorch",
           "correct": f"PSNR >= {MIN_PSNR_DB:g} dB against eager fp32 (images in [-1, 1]); the block-sparse chain: "
                      f"PSNR >= {MIN_PRUNED_PSNR_DB:g} dB against the same pruned model in eager PyTorch",
           "floor": "weight bytes of each format / measured read bandwidth (L2 when the weights fit in the cores' "
                    "L2, else DRAM): what reading the weights once costs",
           "targets": "seed G int8 >= 2x ONNX Runtime int8 at batch 1 and 8, >= 1.3x at 64; seed G fp32 >= 1.5x "
                      "ONNX Runtime fp32 at batch 1-64 and >= 3x eager at batch 1; wide G >= 1.2x ONNX Runtime "
                      "(fp32 and int8); int8 PSNR >= 35 dB"},
    checks=checks,
    timing={"default": {"min_run_time": 0.3, "min_blocks": 3, "target_blocks": 10, "max_run_time": 1.5},
            "quick": {"min_run_time": 0.2, "min_blocks": 3, "target_blocks": 8, "max_run_time": 1.0},
            "full": {"min_run_time": 0.5, "min_blocks": 3, "target_blocks": 15, "max_run_time": 3.0}},
)

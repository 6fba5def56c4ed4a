"""int8_linear: ``leaky_relu(x @ W.T + b, 0.2)`` in int8 (float in, float out), against the int8
recipes a PyTorch user would otherwise pick, and whole generators quantised end to end.

Cases: layers (M, K, N) = the generators' layers at M in {64, 1024}, (64, 4096, 4096) and
(1024, 4096, 4096); whole models (model, batch) = the seed and the wide generator at batch 64
and 1024. The full grid (``--full``, ``pytest benchmarks``) has all of them; the default set
four layers (1024x2048 and 4096x4096 at both batches) and every generator but the wide one at
batch 1024; quick two layers and the seed generator at batch 64.

Providers (float32 x in, float out; every weight quantised per output channel, outside the timing):
eager fp32; bf16 (inputs and weights cast once, bf16 in and out); PyTorch's dynamic int8
(``torch.ao.quantization.quantize_dynamic``, packed under the x86 and under the onednn engine);
``torch.ops.onednn.qlinear_pointwise`` with the LeakyReLU post-op (u8 activations with a static
per-tensor scale, quantised in the timed call; layers only); ``torch._int_mm`` with a separate
per-token quantise and dequantise (layers only); torchao's
``quantize_(m, Int8DynamicActivationInt8WeightConfig())``; fastgan ``Int8Linear`` / ``quantize``
per backend, dynamic (per token, one fused int8_linear_dynamic call per layer) and static
(calibrated per-tensor scale).

int8 does not match float within fp tolerance, so a row is "correct" when its SQNR against the
float32 layer is >= 30 dB (layers) or its PSNR against the fp32 generator is >= 35 dB (images in
[-1, 1], data range 2; whole models).
"""
from __future__ import annotations

import functools
import warnings
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ... import activations
from ...convert import quantize
from ...models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS
from ...nn import Int8Linear
from ...ops import int8_linear as q8
from ...ops import reference as reference_ops
from .. import providers
from ..registry import Case, Provider, Suite
from . import _common
from ._int8_checks import checks

OP = "int8_linear"
SLOPE = 0.2
BATCHES = (64, 1024)
EXTRA_SHAPES = ((64, 4096, 4096), (1024, 4096, 4096))
DEFAULT_SHAPES = ((64, 1024, 2048), (1024, 1024, 2048)) + EXTRA_SHAPES
QUICK_SHAPES = ((64, 1024, 2048), (64, 4096, 4096))
MODELS = (("seed", 64), ("seed", 1024), ("wide", 64), ("wide", 1024))
DEFAULT_MODELS = MODELS[:3]
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32,)}
MIN_SQNR_DB, MIN_PSNR_DB = 30.0, 35.0
CALIBRATION_BATCHES, CALIBRATION_BATCH = 2, 64

X86, ONEDNN = "torch.ao dynamic int8 (x86)", "torch.ao dynamic int8 (onednn)"
QLINEAR, INT_MM, TORCHAO, BF16 = "onednn.qlinear_pointwise", "torch._int_mm", "torchao int8 dynamic", "bf16"
INT8_PEERS = (X86, ONEDNN, QLINEAR, INT_MM, TORCHAO)
LAYER_ONLY = "a layer recipe: PyTorch has no converter that builds a whole model on it"


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    params = (("activation", "leaky_relu"), ("negative_slope", SLOPE))
    if "model" in dims:
        name, batch = dims["model"], dims["batch"]
        layers = _common.generator_layers(name)
        return Case(OP, (("model", name), ("batch", batch)), dtype, device,
                    flops=sum(2.0 * batch * k * n for k, n in layers),
                    bytes=float(sum(k * n + 4 * n + 4 * batch * (k + n) for k, n in layers)), images=batch)
    m, k, n = dims["M"], dims["K"], dims["N"]
    return Case(OP, (("M", m), ("K", k), ("N", n)), dtype, device, flops=2.0 * m * k * n,
                bytes=float(4 * m * k + n * k + 4 * n + 4 * m * n), params=params)


def _cases(shapes, models, device) -> list[Case]:
    return ([make_case({"M": m, "K": k, "N": n}, dt, device) for m, k, n in shapes for dt in DTYPES[device]]
            + [make_case({"model": name, "batch": b}, dt, device) for name, b in models for dt in DTYPES[device]])


def default_cases(device: str, quick: bool) -> list[Case]:
    return _cases(QUICK_SHAPES, MODELS[:1], device) if quick else _cases(DEFAULT_SHAPES, DEFAULT_MODELS, device)


def full_cases(device: str) -> list[Case]:
    layers = list(dict.fromkeys(SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS))
    shapes = list(dict.fromkeys([(m, k, n) for m in BATCHES for k, n in layers] + list(EXTRA_SHAPES)))
    return _cases(shapes, MODELS, device)


# ----------------------------------------------------------------------------- inputs
def make_inputs(case: Case):
    d = case.dims
    if _common.is_model(case):
        gen = _common.generator(d["model"], device=case.device)
        cal = [_common.latent(gen, CALIBRATION_BATCH, seed=1 + i, device=case.device)
               for i in range(CALIBRATION_BATCHES)]
        return SimpleNamespace(model=True, gen=gen, z=_common.latent(gen, d["batch"], device=case.device), cal=cal)
    gen = torch.Generator().manual_seed(d["M"] * 1_000_003 + d["K"] * 1009 + d["N"])
    bound = d["K"] ** -0.5
    x = torch.randn(d["M"], d["K"], generator=gen)
    w = torch.empty(d["N"], d["K"]).uniform_(-bound, bound, generator=gen)
    b = torch.empty(d["N"]).uniform_(-bound, bound, generator=gen)
    x, w, b = (t.to(case.device) for t in (x, w, b))
    linear = nn.Linear(d["K"], d["N"], device=case.device).requires_grad_(False)
    linear.weight.copy_(w)
    linear.bias.copy_(b)
    return SimpleNamespace(model=False, x=x, w=w, b=b, linear=linear)


def reference(case: Case, inputs) -> torch.Tensor:
    if inputs.model:
        return inputs.gen(inputs.z)
    return reference_ops.fused_linear(inputs.x, inputs.w, inputs.b, activations.Activation.LEAKY_RELU, SLOPE)


def compare(case: Case, out: torch.Tensor, expected: torch.Tensor):
    """Errors, SQNR (and PSNR for whole models); correct = SQNR >= 30 dB, or PSNR >= 35 dB for models."""
    abs_err, rel_err, _ = _common.float_errors(case, out, expected)
    figures = _common.snr_figures(out, expected, _common.is_model(case))
    ok = figures["psnr_db"] >= MIN_PSNR_DB if _common.is_model(case) else figures["sqnr_db"] >= MIN_SQNR_DB
    return abs_err, rel_err, bool(ok), figures


# ----------------------------------------------------------------------------- peers
def _layer_module(inputs) -> nn.Module:
    return _common.frozen_copy(nn.Sequential(inputs.linear, nn.LeakyReLU(SLOPE)))


def _module_call(module, inputs):
    arg = inputs.z if inputs.model else inputs.x
    return lambda: module(arg)


def eager_build(case, inputs):
    if inputs.model:
        return _module_call(inputs.gen, inputs)
    x, w, b = inputs.x, inputs.w, inputs.b
    return lambda: F.leaky_relu(F.linear(x, w, b), SLOPE)


def bf16_build(case, inputs):
    if inputs.model:
        model, z = _common.frozen_copy(inputs.gen).to(torch.bfloat16), inputs.z.to(torch.bfloat16)
        return lambda: model(z)
    x, w, b = (t.to(torch.bfloat16) for t in (inputs.x, inputs.w, inputs.b))
    return lambda: F.leaky_relu(F.linear(x, w, b), SLOPE)


def dynamic_int8(engine: str) -> Provider:
    def skip(case):
        if case.device != "cpu":
            return "PyTorch's dynamic int8 Linear runs on the CPU only"
        if engine not in torch.backends.quantized.supported_engines:
            return f"this torch has no quantized engine {engine!r} (has {torch.backends.quantized.supported_engines})"
        return ""

    def build(case, inputs):
        torch.backends.quantized.engine = engine  # the engine packs the weights (fbgemm vs oneDNN kernels)
        source = _common.frozen_copy(inputs.gen) if inputs.model else _layer_module(inputs)
        with warnings.catch_warnings():  # torch.ao's deprecation notice (it points to torchao, a peer too)
            warnings.simplefilter("ignore")
            module = torch.ao.quantization.quantize_dynamic(source, {nn.Linear}, dtype=torch.qint8)
        arg = inputs.z if inputs.model else inputs.x

        def run():
            if torch.backends.quantized.engine != engine:
                torch.backends.quantized.engine = engine
            return module(arg)
        return run

    return Provider(X86 if engine == "x86" else ONEDNN, "peer", build, skip,
                    description=f"torch.ao.quantization.quantize_dynamic(..., {{nn.Linear}}, torch.qint8) packed "
                                f"and run with torch.backends.quantized.engine = {engine!r}")


def _qlinear_reason() -> str:
    if not torch.backends.mkldnn.is_available():
        return "this torch is built without oneDNN (mkldnn)"
    try:
        torch.ops.onednn.qlinear_pointwise.default  # noqa: B018
        torch.ops.onednn.qlinear_prepack.default  # noqa: B018
    except (AttributeError, RuntimeError):
        return f"torch {torch.__version__} has no torch.ops.onednn.qlinear_pointwise / qlinear_prepack"
    return ""


def qlinear_skip(case) -> str:
    if _common.is_model(case):
        return LAYER_ONLY
    if case.device != "cpu":
        return "oneDNN's quantized linear runs on the CPU only"
    return _qlinear_reason()


def qlinear_build(case, inputs):
    x, b = inputs.x, inputs.b
    wq, ws = q8.reference_quantize_per_token(inputs.w)
    packed = torch.ops.onednn.qlinear_prepack(wq, list(x.shape))
    w_zp = torch.zeros(wq.shape[0], dtype=torch.int32)
    scale, zp = max(float(x.abs().amax()), 1e-8) / 127.0, 128  # static per-tensor scale (u8, zero point 128)

    def run():
        xq = torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr()
        return torch.ops.onednn.qlinear_pointwise(xq, scale, zp, packed, ws, w_zp, b, 1.0, 0, torch.float32,
                                                  "leaky_relu", [SLOPE], "")
    return run


def int_mm_skip(case) -> str:
    if _common.is_model(case):
        return LAYER_ONLY
    if not hasattr(torch, "_int_mm"):
        return f"torch {torch.__version__} has no torch._int_mm"
    d = case.dims
    if case.device == "cuda" and not (d["M"] > 16 and d["K"] > 16 and d["K"] % 8 == 0 and d["N"] % 8 == 0):
        return "torch._int_mm on CUDA needs M > 16, K > 16 and K, N multiples of 8"
    return ""


def int_mm_build(case, inputs):
    x, b = inputs.x, inputs.b
    wq, ws = q8.reference_quantize_per_token(inputs.w)
    wt = wq.t().contiguous().t() if case.device == "cuda" else wq.t()

    def run():
        xs = x.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(127.0)
        xq = torch.round(x / xs).clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(xq, wt).float().mul_(xs).mul_(ws).add_(b)
        return F.leaky_relu(y, SLOPE, inplace=True)
    return run


@functools.lru_cache(maxsize=None)
def torchao_reason() -> str:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # noqa: F401
    except ImportError as exc:
        return f"torchao is not installed ({exc})"
    except Exception as exc:  # a torchao built for another torch
        return f"torchao failed to import: {type(exc).__name__}: {exc}"[:300]
    return ""


def torchao_build(case, inputs):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    module = _common.frozen_copy(inputs.gen) if inputs.model else _layer_module(inputs)
    quantize_(module, Int8DynamicActivationInt8WeightConfig())
    return _module_call(module, inputs)


# ----------------------------------------------------------------------------- fastgan
def fastgan_build(mode: str):
    def build(case, inputs, backend):
        if inputs.model:
            cal = inputs.cal if mode == "static" else None
            model, _ = quantize(_common.frozen_copy(inputs.gen), calibration=cal, mode=mode, backend=backend)
            return _module_call(model.eval(), inputs)
        scale = max(float(inputs.x.abs().amax()), 1e-8) / 127.0 if mode == "static" else None
        module = Int8Linear.from_linear(inputs.linear, "leaky_relu", SLOPE, mode, scale, backend=backend).eval()
        return _module_call(module, inputs)
    return build


EXT_OPS = ("int8_linear_fwd", "int8_pack_weight")
TRITON = {"triton": "fastgan_kernels.triton.int8_linear"}

SUITE = Suite(
    op=OP,
    description="int8 act(x @ W.T + b) with LeakyReLU(0.2), float in and out, on the generators' layer shapes, "
                "and the seed and wide generators quantised end to end",
    shape_names=("M", "K", "N"),
    make_case=make_case,
    default_cases=default_cases,
    full_cases=full_cases,
    make_inputs=make_inputs,
    reference=reference,
    compare=compare,
    providers=[
        Provider("eager", "eager", eager_build, description="eager fp32: F.leaky_relu(F.linear(x, W, b), 0.2); the "
                                                            "fp32 generator for whole models"),
        Provider(BF16, "peer", bf16_build, description="bf16 linear (oneDNN): x, W, b cast to bf16 once, bf16 out"),
        dynamic_int8("x86"),
        dynamic_int8("onednn"),
        Provider(QLINEAR, "peer", qlinear_build, qlinear_skip,
                 description="torch.ops.onednn.qlinear_pointwise(u8 x with static per-tensor scale, s8 weight per "
                             "channel, post-op leaky_relu(0.2), fp32 out); x quantised in the timed call"),
        Provider(INT_MM, "peer", int_mm_build, int_mm_skip,
                 description="per-token quantise (amax, round, clamp), torch._int_mm (s8 x s8 -> s32), dequantise "
                             "(* x_scale * w_scale + b), leaky_relu: separate torch ops"),
        Provider(TORCHAO, "peer", torchao_build, lambda case: torchao_reason(),
                 description="torchao.quantization.quantize_(model, Int8DynamicActivationInt8WeightConfig())"),
        *providers.fastgan_backends(None, EXT_OPS + ("quantize_per_token",), TRITON, build=fastgan_build("dynamic"),
                                    description="fastgan Int8Linear / quantize(mode='dynamic'): per-token scales, "
                                                "quantised inside the GEMM call (fastgan::int8_linear_dynamic)"),
        *providers.fastgan_backends(None, EXT_OPS + ("quantize_per_tensor",), TRITON, build=fastgan_build("static"),
                                    variant="static",
                                    description="fastgan Int8Linear / quantize(mode='static'): calibrated "
                                                "per-tensor input scale (int8 between layers)"),
    ],
    dtypes=DTYPES,
    notes={"reference": "the float32 layer (fastgan_kernels.ops.reference.fused_linear); whole models: the fp32 "
                        "generator",
           "correct": f"SQNR >= {MIN_SQNR_DB:g} dB against the float32 layer; whole models: PSNR >= "
                      f"{MIN_PSNR_DB:g} dB against the fp32 generator (data range 2): int8 is not expected to match "
                      "within float tolerances",
           "vs peer": "speed-up over the strongest torch int8 peer of the same case: the fastest of "
                      + ", ".join(INT8_PEERS) + " that ran",
           "static scales": "layers: amax(|x|) / 127 of the timed input itself (for onednn.qlinear_pointwise and "
                            f"fastgan static); whole models: fastgan.quantize on {CALIBRATION_BATCHES} calibration "
                            f"batches of {CALIBRATION_BATCH} other latents (max observer)",
           "targets": "cpu fp32: fastgan >= 12x eager fp32 on (64, 4096, 4096) and (1024, 4096, 4096); >= 1.3x the "
                      "strongest torch int8 peer (geomean over the layer shapes); whole generators >= 1.5x the "
                      "strongest torch int8 peer (geomean) at PSNR >= 35 dB"},
    peer_group=INT8_PEERS,
    peer_label="strongest torch int8 peer",
    checks=checks,
    timing={"default": {"min_run_time": 0.3, "min_blocks": 3, "target_blocks": 10, "max_run_time": 1.5},
            "full": {"min_run_time": 0.5, "min_blocks": 3, "target_blocks": 15, "max_run_time": 3.0}},
)

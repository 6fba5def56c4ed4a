"""block_sparse_linear: ``leaky_relu(x @ W.T + b, 0.2)`` with W pruned in square blocks (BSR).

Cases (shape names M, K, N, sparsity in percent, block): the generators' layers (SEED and WIDE
GENERATOR_LAYERS) at batch M in {64, 1024} and (1024, 4096, 4096); the weight is pruned like
``fastgan_kernels.prune`` does (the strongest blocks by L2 norm are kept). Whole-model cases
(model, batch, sparsity, block): the wide generator pruned to 90% by ``fastgan_kernels.prune``.

* full grid (``--full``, ``pytest benchmarks``): every shape x sparsity {50, 75, 90, 95}% x block
  {16, 32, 64}, plus the pruned wide generator at batch 64 and 1024;
* default: block 32 at every sparsity on three layers of the wide generator (64x1024x2048,
  64x2048x4096, 1024x1024x2048) and at 90% and 95% on 1024x4096x4096 (at lower sparsity torch's
  BSR takes several seconds a call there), plus the pruned wide generator at batch 64;
* quick: block 32 at 75% and 90% on two shapes, plus the pruned wide generator at batch 64.

Providers: eager dense (``F.linear`` on the masked dense weight, then ``F.leaky_relu``), torch's
own sparse peer (``F.linear`` with a ``torch.sparse_bsr`` weight: the weight, bias and x padded to
whole blocks once, outside the timing; the output sliced back to N, a view), and each fastgan
backend. The reference is the masked dense weight in float32.
"""
from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ... import activations
from ...models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS
from ...convert import prune
from ...nn import BlockSparseLinear
from ...nn.block_sparse_linear import keep_strongest
from ...ops.block_sparse_linear import block_sparse_linear as fastgan_block_sparse_linear
from ...ops import bsr
from ...ops import reference as reference_ops
from .. import providers, summary
from ..registry import Case, Provider, Suite
from . import _common

OP = "block_sparse_linear"
SLOPE = 0.2
SPARSITIES = (0.5, 0.75, 0.9, 0.95)
BLOCKS = (16, 32, 64)
BATCHES = (64, 1024)
EXTRA_SHAPES = ((1024, 4096, 4096),)
DEFAULT_SHAPES = ((64, 1024, 2048), (64, 2048, 4096), (1024, 1024, 2048))
# (1024, 4096, 4096) in the default set at the high sparsities only: at 50% torch.sparse BSR takes ~7 s a call.
DEFAULT_BIG = ((1024, 4096, 4096), (0.9, 0.95))
QUICK_SHAPES = ((64, 1024, 2048), (1024, 1024, 2048))
MODEL, MODEL_SPARSITY, MODEL_BLOCK = "wide", 0.9, 32
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float16, torch.bfloat16)}
TORCH_BSR = "torch.sparse BSR"
# Targets on the CPU in fp32 (the project's issue): geomean over the shapes per sparsity, and vs torch BSR.
TARGETS = {("cpu", "float32"): {"sparsity": {90: 7.0, 75: 3.0}, "vs_torch_bsr": 10.0}}


def kept_blocks(n: int, k: int, block: int, sparsity: float) -> int:
    """Blocks ``keep_strongest`` keeps in an N x K weight (the last row / column of blocks padded)."""
    nbr, nbc = bsr.grid((n, k), (block, block))
    return min(nbr * nbc, max(1, int(round((1.0 - sparsity) * nbr * nbc))))


def _layer_counts(m, k, n, block, sparsity, size):
    keep = kept_blocks(n, k, block, sparsity)
    nbr = bsr.grid((n, k), (block, block))[0]
    flops, nz = 2.0 * m * k * n, 2.0 * m * keep * block * block
    nbytes = float((m * k + keep * block * block + n + m * n) * size + (keep + nbr + 1) * 4)
    return flops, nz, nbytes


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    size = torch.empty((), dtype=dtype).element_size()
    params = (("activation", "leaky_relu"), ("negative_slope", SLOPE))
    if "model" in dims:
        name, batch, pct, block = dims["model"], dims["batch"], dims["sparsity"], dims["block"]
        counts = [_layer_counts(batch, k, n, block, pct / 100, size) for k, n in _common.generator_layers(name)]
        return Case(OP, (("model", name), ("batch", batch), ("sparsity", pct), ("block", block)), dtype, device,
                    flops=sum(c[0] for c in counts), nonzero_flops=sum(c[1] for c in counts),
                    bytes=sum(c[2] for c in counts), params=params, images=batch)
    m, k, n, pct, block = dims["M"], dims["K"], dims["N"], dims["sparsity"], dims["block"]
    bsr.check_block(block)
    if not 0 <= pct < 100:
        raise ValueError(f"{OP}: sparsity is in percent, in [0, 100), got {pct}")
    flops, nz, nbytes = _layer_counts(m, k, n, block, pct / 100, size)
    return Case(OP, (("M", m), ("K", k), ("N", n), ("sparsity", pct), ("block", block)), dtype, device,
                flops=flops, nonzero_flops=nz, bytes=nbytes, params=params)


def pct(sparsity: float) -> int:
    return int(round(sparsity * 100))


def layer_shapes() -> list[tuple[int, int, int]]:
    layers = list(dict.fromkeys(SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS))
    return [(m, k, n) for m in BATCHES for k, n in layers] + list(EXTRA_SHAPES)


def _cases(shapes, sparsities, blocks, batches, device) -> list[Case]:
    cases = [make_case({"M": m, "K": k, "N": n, "sparsity": pct(s), "block": b}, dtype, device)
             for (m, k, n) in shapes for b in blocks for s in sparsities for dtype in DTYPES[device]]
    cases += [make_case({"model": MODEL, "batch": batch, "sparsity": pct(MODEL_SPARSITY), "block": MODEL_BLOCK},
                        dtype, device) for batch in batches for dtype in DTYPES[device]]
    return cases


def default_cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return _cases(QUICK_SHAPES, (0.75, 0.9), (32,), (64,), device)
    cases = _cases(DEFAULT_SHAPES, SPARSITIES, (32,), (), device)
    return cases + _cases(DEFAULT_BIG[:1], DEFAULT_BIG[1], (32,), (64,), device)


def full_cases(device: str) -> list[Case]:
    return _cases(layer_shapes(), SPARSITIES, BLOCKS, BATCHES, device)


# ----------------------------------------------------------------------------- inputs
def pruned_layer(m: int, k: int, n: int, sparsity: float, block: int):
    """(x, masked dense weight, bias, BsrWeight): nn.Linear-like init, the strongest blocks kept."""
    gen = torch.Generator().manual_seed(m * 1_000_003 + k * 1009 + n + int(sparsity * 1000) * 7 + block)
    bound = k ** -0.5
    x = torch.randn(m, k, generator=gen)
    w = torch.empty(n, k).uniform_(-bound, bound, generator=gen)
    b = torch.empty(n).uniform_(-bound, bound, generator=gen)
    mask = keep_strongest(bsr.block_norms(w, block), sparsity)
    weight = bsr.BsrWeight.from_dense(w, (block, block), mask)
    return x, weight.to_dense(), b, weight


def pruned_model(name: str, batch: int, sparsity: float, block: int, dtype, device):
    """z, the masked dense generator (plain Linear layers, pruned weights) and its BSR twin from prune()."""
    dense = _common.generator(name)
    masked, _ = prune(dense, sparsity, block=(block, block), mode="masked")
    layers = [mod for mod in masked.modules() if isinstance(mod, BlockSparseLinear)]
    linears = [mod for mod in dense.modules() if isinstance(mod, torch.nn.Linear)]
    for lin, layer in zip(linears, layers):
        lin.weight.copy_(layer.dense_weight())
    for layer in layers:
        layer.to_bsr()
    masked = masked.to(device=device, dtype=dtype).eval().requires_grad_(False)
    z = _common.latent(dense, batch, dtype=dtype, device=device)
    return z, dense.to(device=device, dtype=dtype), masked


def make_inputs(case: Case):
    d = case.dims
    if _common.is_model(case):
        z, dense, sparse = pruned_model(d["model"], d["batch"], d["sparsity"] / 100, d["block"], case.dtype,
                                        case.device)
        return SimpleNamespace(model=True, z=z, dense=dense, sparse=sparse)
    x, w, b, weight = pruned_layer(d["M"], d["K"], d["N"], d["sparsity"] / 100, d["block"])
    to = {"device": case.device, "dtype": case.dtype}
    return SimpleNamespace(model=False, x=x.to(**to), w=w.to(**to), b=b.to(**to), weight=weight.to(**to))


def reference(case: Case, inputs) -> torch.Tensor:
    if inputs.model:
        return copy.deepcopy(inputs.dense).float()(inputs.z.float()).to(case.dtype)
    return reference_ops.fused_linear(inputs.x, inputs.w, inputs.b, activations.Activation.LEAKY_RELU, SLOPE)


def compare(case: Case, out: torch.Tensor, expected: torch.Tensor):
    abs_err, rel_err, ok = _common.float_errors(case, out, expected)
    extra = _common.snr_figures(out, expected, model=True) if _common.is_model(case) else {}
    return abs_err, rel_err, ok, extra


# ----------------------------------------------------------------------------- providers
def eager_build(case: Case, inputs):
    if inputs.model:
        return lambda: inputs.dense(inputs.z)
    x, w, b = inputs.x, inputs.w, inputs.b
    return lambda: F.leaky_relu(F.linear(x, w, b), SLOPE)


def _torch_bsr(weight: bsr.BsrWeight, bias: torch.Tensor):
    """(BSR tensor padded to whole blocks, bias padded to match)."""
    with warnings.catch_warnings():  # "Sparse BSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        t = weight.to_torch_bsr()
    return t, F.pad(bias, (0, t.shape[0] - bias.shape[0]))


def torch_bsr_build(case: Case, inputs):
    if inputs.model:
        layers = []
        for layer in (m for m in inputs.sparse.modules() if isinstance(m, BlockSparseLinear)):
            w, b = _torch_bsr(layer.bsr_weight(), layer.bias)
            layers.append((w, b, layer.activation, layer.negative_slope))
        gen, z = inputs.dense, inputs.z
        n_out, out_shape = gen.channels * gen.img_size ** 2, (z.shape[0], gen.channels, gen.img_size, gen.img_size)

        def run():
            h = z
            for w, b, act, slope in layers:
                if h.shape[1] < w.shape[1]:  # a K that is not a whole number of blocks (not in the wide generator)
                    h = F.pad(h, (0, w.shape[1] - h.shape[1]))
                h = activations.apply(F.linear(h, w, b), act, slope)
            return h[:, :n_out].reshape(out_shape)
        return run
    w, b = _torch_bsr(inputs.weight, inputs.b)
    n = inputs.b.shape[0]
    x = F.pad(inputs.x, (0, w.shape[1] - inputs.x.shape[1]))  # once, outside the timing
    if w.shape[0] == n:
        return lambda: F.leaky_relu(F.linear(x, w, b), SLOPE)
    return lambda: F.leaky_relu(F.linear(x, w, b), SLOPE)[:, :n]


def fastgan_layer(x, weight, b, backend):
    return fastgan_block_sparse_linear(x, weight, b, "leaky_relu", SLOPE, backend, check_indices=False)


def fastgan_build(case: Case, inputs, backend: str):
    if inputs.model:
        model = copy.deepcopy(inputs.sparse)
        for layer in model.modules():
            if isinstance(layer, BlockSparseLinear):
                layer.backend = backend
        return lambda: model(inputs.z)
    x, weight, b = inputs.x, inputs.weight, inputs.b
    return lambda: fastgan_layer(x, weight, b, backend)


def torch_bsr_skip(case: Case) -> str:
    if case.device == "cuda" and case.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return f"torch.sparse BSR matmul has no {case.dtype} kernel on CUDA"
    return ""


# ----------------------------------------------------------------------------- target lines
def _level_lines(device, dtype, layers, providers, targets, skipped) -> list[dict]:
    out = []
    for level in sorted({r.shape["sparsity"] for r in layers}):
        target = targets.get("sparsity", {}).get(level)
        what = (f"{level}% sparsity: fastgan " + (f">= {target:g}x" if target else "vs")
                + " eager dense (geomean over shapes x blocks)")
        values = {p: [r.speedup_vs_eager for r in _common.good(layers, p)
                      if r.shape["sparsity"] == level and r.speedup_vs_eager] for p in providers}
        values = {p: v for p, v in values.items() if v}
        if values:
            out += _common.geomean_check(OP, device, dtype, what, target, values, f"sparsity_{level}")
        elif target:
            out.append(_common.not_measured(OP, device, dtype, what, skipped, f"sparsity_{level}"))
    target = targets.get("vs_torch_bsr")
    what = (f"fastgan >= {target:g}x {TORCH_BSR}" if target else f"fastgan vs {TORCH_BSR}") + \
        " (geomean over every sparsity, block and shape)"
    values = {p: [r.speedup_vs_peer for r in _common.good(layers, p) if r.speedup_vs_peer] for p in providers}
    values = {p: v for p, v in values.items() if v}
    if values:
        out += _common.geomean_check(OP, device, dtype, what, target, values, "vs_torch_bsr")
    elif target and layers:
        out.append(_common.not_measured(OP, device, dtype, what, skipped, "vs_torch_bsr"))
    return out


def _model_lines(device, dtype, models, skipped) -> list[dict]:
    out = []
    for case in dict.fromkeys(r.case for r in models):
        rows = {r.provider: r for r in models if r.case == case and r.status == "ok" and r.images_per_s}
        if not rows:
            continue
        d = next(iter(rows.values())).shape
        what = (f"{d['model']} generator pruned to {d['sparsity']}% (block {d['block']}), batch {d['batch']}: "
                + ", ".join(f"{name} {r.images_per_s:,.0f} images/s" for name, r in rows.items()
                            if r.kind != "fastgan"))
        fast = [r for r in rows.values() if r.kind == "fastgan"]
        if not fast:
            what += "; no fastgan backend ran" + _common.skip_note(skipped, device)
        for r in fast:
            what += (f"; {r.provider} {r.images_per_s:,.0f} images/s = {r.speedup_vs_eager:.2f}x eager dense"
                     + (f", {r.speedup_vs_peer:.2f}x {TORCH_BSR}" if r.speedup_vs_peer else "")
                     + f", PSNR {_common.db(r.psnr_db)} dB vs fp32" + ("" if r.correct else " (WRONG output)"))
        out.append(summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what, False), "info",
                                       name="model", measured=max((r.images_per_s for r in fast), default=None)))
    return out


def checks(rows, skipped) -> list[dict]:
    """Geomean speed-up over eager dense per sparsity level (targets at 90% and 75% on the CPU in fp32),
    over torch.sparse BSR for all layer rows, and a line per pruned whole generator."""
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        layers = [r for r in group if "M" in r.shape]
        models = [r for r in group if "model" in r.shape]
        out += _level_lines(device, dtype, layers, _common.fastgan_providers(group), TARGETS.get((device, dtype), {}),
                            skipped)
        out += _model_lines(device, dtype, models, skipped)
    return out


SUITE = Suite(
    op=OP,
    description="act(x @ W.T + b) with LeakyReLU(0.2) and W pruned in blocks (BSR), on the generators' layer "
                "shapes, and the wide generator pruned to 90%",
    shape_names=("M", "K", "N", "sparsity", "block"),
    make_case=make_case,
    default_cases=default_cases,
    full_cases=full_cases,
    make_inputs=make_inputs,
    reference=reference,
    compare=compare,
    providers=[
        Provider("eager", "eager", eager_build,
                 description="eager dense: F.leaky_relu(F.linear(x, W_masked, b), 0.2) (the generator's nn.Linear "
                             "layers holding the pruned weights, for whole models)"),
        Provider(TORCH_BSR, "peer", torch_bsr_build, torch_bsr_skip,
                 description="F.leaky_relu(F.linear(x, W_bsr, b), 0.2) with W_bsr = torch.sparse_bsr_tensor "
                             "(x, W and b padded to whole blocks outside the timing; output sliced to N)"),
        *providers.fastgan_backends(None, "bsr_linear_fwd", build=fastgan_build,
                                    kernel_modules={"triton": "fastgan_kernels.triton.block_sparse_linear"}),
    ],
    dtypes=DTYPES,
    notes={"reference": "the masked dense weight in float32 (fastgan_kernels.ops.reference.fused_linear); "
                        "whole models: the generator's Linear layers holding the pruned weights, in float32",
           "pruning": "the strongest blocks by L2 norm are kept (as fastgan_kernels.prune does); sparsity is in "
                      "percent of the blocks; whole models: fastgan_kernels.prune(wide_generator(), 0.9, block=32)",
           "TFLOP/s": "dense-equivalent (2 M K N per call); '(x nz)' counts only the kept blocks' FLOPs",
           "vs peer": f"speed-up over {TORCH_BSR} in the same case",
           "targets": "cpu fp32: 90% sparsity >= 7x eager dense and 75% >= 3x (geomean over the shapes of that "
                      f"sparsity), >= 10x {TORCH_BSR} (geomean over every layer row)"},
    peer_group=(TORCH_BSR,),
    peer_label=TORCH_BSR,
    checks=checks,
    timing={"default": {"min_run_time": 0.3, "min_blocks": 3, "target_blocks": 10, "max_run_time": 1.5},
            "full": {"min_run_time": 0.5, "min_blocks": 3, "target_blocks": 15, "max_run_time": 3.0}},
)

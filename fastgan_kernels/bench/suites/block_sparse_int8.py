"""block_sparse_int8: the block-sparse int8 linear (pruned and quantised, kept sparse) against our
dense int8 and our sparse fp32 kernels, in the same run.

Cases: the 4096 x 4096 layer (leaky_relu(x @ W.T + b, 0.2)) at M = 64 and 1024, and the wide
generator at batch 1 and 64, each at sparsity 75% and 90% in 32 x 32 blocks (the default set;
quick: M = 64 and batch 1; the full grid adds 95% and block 16). Weights are pruned as
``fastgan_kernels.prune`` does (the strongest blocks by L2 norm kept) and quantised per output
channel; activations are quantised per token at run time (dynamic) by every int8 provider.

Providers: ``dense int8`` (our Int8Linear / ``quantize(model, mode="dynamic")`` on the pruned dense
weights: the baseline, so "vs eager" in this suite's rows means vs our dense int8), ``sparse fp32``
(our BlockSparseLinear / ``prune(model)``: the peer, "vs peer" = vs our sparse fp32) and each
backend of ``block_sparse_int8_linear`` (BlockSparseInt8Linear / ``compress(model, ...,
int8="dynamic")``). Reference: the pruned model (or layer) in fp32; int8 rows are correct when
their SQNR is >= 30 dB (layers) or their PSNR >= 35 dB (generators, images in [-1, 1]).

Target lines (issue 13): at 90% sparsity >= 2.5x dense int8 and >= 2x sparse fp32; at 75%
>= 1.5x dense int8 (geomeans over the layer and model rows of that sparsity); PSNR >= 35 dB against
the pruned fp32 generator; and, for information, the floor of each case: the sparse int8 weight
bytes over the read bandwidth measured here (DRAM, and a warm buffer of the weights' size).
"""
from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from ...convert import quantize
from ...nn import BlockSparseInt8Linear, BlockSparseLinear, Int8Linear
from ...ops import bsr
from .. import providers, summary
from ..registry import Case, Provider, Suite
from . import _common
from .block_sparse_linear import kept_blocks, pruned_layer, pruned_model

OP = "block_sparse_int8"
SLOPE = 0.2
LAYER = (4096, 4096)
LAYER_BATCHES, MODEL_BATCHES, SPARSITIES = (64, 1024), (1, 64), (75, 90)
MODEL = "wide"
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32,)}
DENSE_INT8, SPARSE_FP32 = "dense int8", "sparse fp32"
MIN_SQNR_DB, MIN_PSNR_DB = 30.0, 35.0
TARGETS = {90: {"dense": 2.5, "fp32": 2.0}, 75: {"dense": 1.5}}


def _weight_bytes(k: int, n: int, pct: int, block: int) -> float:
    """Bytes of a sparse int8 weight: kept blocks, index, per-channel scales and bias."""
    keep = kept_blocks(n, k, block, pct / 100)
    return float(keep * block * block + 4 * (keep + bsr.grid((n, k), (block, block))[0] + 1) + 8 * n)


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    pct, block = dims["sparsity"], dims["block"]
    if "model" in dims:
        layers = _common.generator_layers(dims["model"])
        batch = dims["batch"]
        return Case(OP, (("model", dims["model"]), ("batch", batch), ("sparsity", pct), ("block", block)), dtype,
                    device, flops=sum(2.0 * batch * k * n for k, n in layers),
                    nonzero_flops=sum(2.0 * batch * kept_blocks(n, k, block, pct / 100) * block ** 2
                                      for k, n in layers),
                    bytes=sum(_weight_bytes(k, n, pct, block) + 4.0 * batch * (k + n) for k, n in layers),
                    images=batch)
    m, k, n = dims["M"], dims["K"], dims["N"]
    return Case(OP, (("M", m), ("K", k), ("N", n), ("sparsity", pct), ("block", block)), dtype, device,
                flops=2.0 * m * k * n, nonzero_flops=2.0 * m * kept_blocks(n, k, block, pct / 100) * block ** 2,
                bytes=_weight_bytes(k, n, pct, block) + 4.0 * m * (k + n),
                params=(("activation", "leaky_relu"), ("negative_slope", SLOPE)))


def _cases(batches, models, sparsities, blocks, device) -> list[Case]:
    dt = DTYPES[device][0]
    k, n = LAYER
    out = [make_case({"M": m, "K": k, "N": n, "sparsity": s, "block": b}, dt, device)
           for b in blocks for s in sparsities for m in batches]
    return out + [make_case({"model": MODEL, "batch": m, "sparsity": s, "block": b}, dt, device)
                  for b in blocks for s in sparsities for m in models]


def default_cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return _cases(LAYER_BATCHES[:1], MODEL_BATCHES[:1], SPARSITIES, (32,), device)
    return _cases(LAYER_BATCHES, MODEL_BATCHES, SPARSITIES, (32,), device)


def full_cases(device: str) -> list[Case]:
    return _cases(LAYER_BATCHES, MODEL_BATCHES, SPARSITIES + (95,), (16, 32), device)


# ----------------------------------------------------------------------------- inputs
@functools.lru_cache(maxsize=2)
def _models(name: str, pct: int, block: int, device: str):
    """(dense generator holding the pruned weights, its BSR fp32 twin); cached: batches share them."""
    _, dense, sparse = pruned_model(name, 1, pct / 100, block, torch.float32, device)
    return dense, sparse


def make_inputs(case: Case):
    d = case.dims
    if _common.is_model(case):
        dense, sparse = _models(d["model"], d["sparsity"], d["block"], case.device)
        z = _common.latent(dense, d["batch"], device=case.device)
        return SimpleNamespace(model=True, z=z, dense=dense, sparse=sparse)
    x, w, b, weight = pruned_layer(d["M"], d["K"], d["N"], d["sparsity"] / 100, d["block"])
    sparse = BlockSparseLinear(d["K"], d["N"], d["block"], activation="leaky_relu", negative_slope=SLOPE)
    sparse.load_state_dict({"values": weight.values, "row_ptr": weight.row_ptr, "col_idx": weight.col_idx,
                            "bias": b})
    dense = torch.nn.Linear(d["K"], d["N"])
    with torch.no_grad():
        dense.weight.copy_(w), dense.bias.copy_(b)
    to = {"device": case.device}
    return SimpleNamespace(model=False, x=x.to(**to), dense=dense.to(**to).eval(), sparse=sparse.to(**to).eval())


def reference(case: Case, inputs) -> torch.Tensor:
    with torch.no_grad():
        if inputs.model:
            return inputs.dense(inputs.z)
        return F.leaky_relu(inputs.dense(inputs.x), SLOPE)


def compare(case: Case, out: torch.Tensor, expected: torch.Tensor):
    abs_err, rel_err, _ = _common.float_errors(case, out.float(), expected.float())
    figures = _common.snr_figures(out, expected, _common.is_model(case))
    ok = figures["psnr_db"] >= MIN_PSNR_DB if _common.is_model(case) else figures["sqnr_db"] >= MIN_SQNR_DB
    return abs_err, rel_err, ok, figures


# ----------------------------------------------------------------------------- providers
def _no_grad(fn, *args):
    def run():
        with torch.no_grad():
            return fn(*args)
    return run


@functools.lru_cache(maxsize=4)
def _int8_model(name: str, pct: int, block: int, device: str, sparse: bool, backend: str):
    """The pruned generator in int8 (dense or sparse), built once for both batches of a sparsity."""
    dense, pruned = _models(name, pct, block, device)
    if sparse:
        return quantize(pruned, mode="dynamic", sparse="always", backend=backend)[0]
    return quantize(dense, mode="dynamic")[0]


def dense_int8_build(case: Case, inputs):
    d = case.dims
    if inputs.model:
        return _no_grad(_int8_model(d["model"], d["sparsity"], d["block"], case.device, False, "auto"), inputs.z)
    layer = Int8Linear.from_linear(inputs.dense, "leaky_relu", SLOPE)
    return _no_grad(layer, inputs.x)


def sparse_fp32_build(case: Case, inputs):
    return _no_grad(inputs.sparse, inputs.z if inputs.model else inputs.x)


def sparse_int8_build(case: Case, inputs, backend: str):
    d = case.dims
    if inputs.model:
        return _no_grad(_int8_model(d["model"], d["sparsity"], d["block"], case.device, True, backend), inputs.z)
    layer = BlockSparseInt8Linear.from_block_sparse(inputs.sparse, backend=backend)
    return _no_grad(layer, inputs.x)


# ----------------------------------------------------------------------------- target lines
@functools.lru_cache(maxsize=None)
def read_bandwidth(nbytes: int) -> float:
    """Bytes/s one core reads from a buffer of ``nbytes`` (numpy float32 max, SIMD; repeated to >= 64 MB a
    sample, best of 5). One core, without a thread team: on the shared 2-core machine a parallel
    region's wake-up (up to tens of ms when the other core is busy) would swamp the measurement."""
    buf = np.ones(max(1024, nbytes // 4), dtype=np.float32)
    reps = max(1, (64 << 20) // buf.nbytes)
    buf.max()
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            buf.max()
        best = min(best, (time.perf_counter() - t) / reps)
    return buf.nbytes / best


def _weights_of(case_shape: dict) -> float:
    layers = (_common.generator_layers(case_shape["model"]) if "model" in case_shape
              else [(case_shape["K"], case_shape["N"])])
    return sum(_weight_bytes(k, n, case_shape["sparsity"], case_shape["block"]) for k, n in layers)


def _floor_line(device, dtype, shape, row) -> dict:
    nbytes = _weights_of(shape)
    dram, warm = read_bandwidth(256 << 20), read_bandwidth(int(nbytes))
    what = (f"floor {', '.join(f'{k}={v}' for k, v in shape.items())}: sparse int8 weights {nbytes / 1e6:.2f} MB / "
            f"{dram / 1e9:.1f} GB/s (DRAM, one core) = {nbytes / dram * 1e3:.3f} ms, / {warm / 1e9:.1f} GB/s (one core, a warm buffer "
            f"of that size) = {nbytes / warm * 1e3:.3f} ms; {row.provider} {row.median_s * 1e3:.3f} ms")
    return summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what, False), "info", name="floor",
                               provider=row.provider, measured=row.median_s)


def _ratio_lines(device, dtype, rows, fast, skipped) -> list[dict]:
    out = []
    for pct, targets in sorted(TARGETS.items(), reverse=True):
        level = [r for r in rows if r.shape["sparsity"] == pct]
        for key, label, attr in (("dense", DENSE_INT8, "speedup_vs_eager"), ("fp32", SPARSE_FP32, "speedup_vs_peer")):
            target = targets.get(key)
            what = (f"{pct}% sparsity: sparse int8 " + (f">= {target:g}x" if target else "vs") + f" our {label} "
                    "(geomean over the 4096x4096 layers and the wide generator)")
            values = {p: [getattr(r, attr) for r in _common.good(level, p) if getattr(r, attr)] for p in fast}
            values = {p: v for p, v in values.items() if v}
            if values:
                out += _common.geomean_check(OP, device, dtype, what, target, values, f"{key}_{pct}")
            elif target and level:
                out.append(_common.not_measured(OP, device, dtype, what, skipped, f"{key}_{pct}"))
    return out


def checks(rows, skipped) -> list[dict]:
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        fast = _common.fastgan_providers(group)
        out += _ratio_lines(device, dtype, group, fast, skipped)
        for r in (r for r in group if r.provider in fast and "model" in r.shape and r.status == "ok"):
            met = r.psnr_db is not None and r.psnr_db >= MIN_PSNR_DB
            what = (f"wide generator at {r.shape['sparsity']}%, batch {r.shape['batch']}: PSNR >= {MIN_PSNR_DB:g} dB "
                    f"vs the pruned fp32 model: {r.provider} {_common.db(r.psnr_db)} dB, {summary.verdict(met)}")
            out.append(summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what), met,
                                           name="psnr", provider=r.provider, measured=r.psnr_db, target=MIN_PSNR_DB))
        if device == "cpu":
            out += [_floor_line(device, dtype, r.shape, r) for r in group
                    if r.provider in fast and r.status == "ok" and r.median_s]
    return out


SUITE = Suite(
    op=OP,
    description="block-sparse int8 linear (pruned + quantised, kept sparse) vs our dense int8 and our sparse fp32, "
                "on the 4096x4096 layer and the wide generator",
    shape_names=("M", "K", "N", "sparsity", "block"),
    make_case=make_case,
    default_cases=default_cases,
    full_cases=full_cases,
    make_inputs=make_inputs,
    reference=reference,
    compare=compare,
    providers=[
        Provider(DENSE_INT8, "peer", dense_int8_build,
                 description="fastgan Int8Linear (dynamic per-token) holding the pruned dense weight; whole models: "
                             "quantize(generator with the pruned weights, mode='dynamic')"),
        Provider(SPARSE_FP32, "peer", sparse_fp32_build,
                 description="fastgan BlockSparseLinear (BSR, fp32); whole models: prune(wide_generator(), s)"),
        *providers.fastgan_backends(None, "bsr_int8_linear_fwd", build=sparse_int8_build,
                                    kernel_modules={"triton": "fastgan_kernels.triton.block_sparse_int8_linear"}),
    ],
    dtypes=DTYPES,
    baseline=DENSE_INT8,
    compile_peer="",
    notes={"reference": "the pruned layer / generator in fp32 (dense weights with the pruned blocks zeroed)",
           "correct": f"SQNR >= {MIN_SQNR_DB:g} dB (layers), PSNR >= {MIN_PSNR_DB:g} dB (generators)",
           "vs eager": f"in this suite: the speed-up over {DENSE_INT8} in the same case",
           "vs peer": f"the speed-up over {SPARSE_FP32} in the same case",
           "targets": "90% sparsity: >= 2.5x dense int8 and >= 2x sparse fp32; 75%: >= 1.5x dense int8; "
                      "PSNR >= 35 dB vs the pruned fp32 generator"},
    peer_group=(SPARSE_FP32,),
    peer_label=SPARSE_FP32,
    checks=checks,
    timing={"default": {"min_run_time": 0.2, "min_blocks": 3, "target_blocks": 8, "max_run_time": 1.0},
            "quick": {"min_run_time": 0.1, "min_blocks": 3, "target_blocks": 5, "max_run_time": 0.5}},
)

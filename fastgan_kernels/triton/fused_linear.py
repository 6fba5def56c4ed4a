"""Triton kernels of ``fastgan::fused_linear``: ``act(x @ W.T + b)`` and its three gradients.

One GEMM kernel, three uses
---------------------------
:func:`_fused_gemm_kernel` computes ``C[M, N] = epilogue(prologue(A)[M, K] @ B[K, N])``
where every operand is addressed through its own (row, column) strides, so a
transposed view is just a swap of strides and no operand is ever copied:

=============  ===========  =====================  ===================  ==========================
call           C            A (rows x reduction)   B (reduction x cols) fused extras
=============  ===========  =====================  ===================  ==========================
forward        y [M, N]     x [M, K]               W.T (W's strides     epilogue: + bias, act
                                                   swapped)
grad_x         gx [M, K]    grad_out [M, N]        W [N, K]             prologue: * act'(y)
grad_weight    gW [N, K]    grad_out.T [N, M]      x [M, K]             prologue: * act'(y.T);
                                                                        row sums of A = grad_bias
=============  ===========  =====================  ===================  ==========================

Each use has its own :func:`triton.autotune` wrapper (own cache, keyed on M, N, K
bucketed to powers of two, so a new batch size reuses a tuned config; Triton adds the
tensors' dtypes to the key) around the same jitted kernel.

Tiling: each program owns one ``BLOCK_M x BLOCK_N`` tile of C and walks the
reduction in ``BLOCK_K`` steps, accumulating ``tl.dot`` into an fp32 register
tile. Programs are ordered in groups of ``GROUP_M`` tile-rows (column-major inside
a group) so tiles running together share A rows and B columns in L2. Ragged
edges (any M, N, K) are handled with load masks (``other=0`` contributes nothing
to the dot) and a masked store; row/column offsets are int64 so tensors past
2**31 elements address correctly. fp32 runs ``tl.dot(..., input_precision="ieee")``
(exact fp32, no TF32); fp16/bf16 run on tensor cores with the fp32 accumulator
(under the interpreter bf16 tiles are upcast first: see :func:`._common.f32_dot`).

Epilogue (forward): ``acc + bias`` then the activation, on the fp32 accumulator,
one rounding to the output dtype at the store (helpers in ``_activation.py``).

Prologue (backward): the gradient GEMMs never see a materialised
``g = grad_out * act'(y)``. As each ``grad_out`` tile is loaded, the matching tile
of the saved output ``y`` is loaded too and ``g`` is formed in fp32 registers, then
rounded to the operand dtype for the dot. In the grad_weight GEMM the reduction
runs over the batch, so the programs of the first column block (``pid_n == 0``)
also sum their fp32 ``g`` tiles over it: that is ``grad_bias``, with no extra
kernel and no atomics (each row block has exactly one such program). With
``need_weight=False`` the same kernel runs only that reduction (``COMPUTE_C=False``).

Under ``TRITON_INTERPRET=1`` (CPU correctness tests) a single small config is
used; on GPU the full list is autotuned, pruned to block sizes the shape can use.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import _resources
from ._activation import check_code, bias_activation_epilogue, grad_from_output
from ._common import INTERPRET, device_guard, f32_dot, grouped_tile_ids, pow2_cap, tune_key


# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages, num_warps); GROUP_M = 8 throughout.
_GPU_TILES = [
    (128, 256, 64, 3, 8),
    (256, 128, 64, 3, 8),
    (128, 128, 64, 3, 8),
    (128, 128, 32, 4, 4),
    (64, 256, 32, 4, 4),
    (128, 64, 32, 4, 4),
    (64, 128, 32, 4, 4),
    (64, 64, 64, 3, 4),
    (128, 32, 32, 4, 4),
    (64, 32, 32, 5, 2),
    (32, 64, 32, 5, 2),
    (16, 64, 64, 4, 4),
    (16, 32, 128, 3, 2),
    # Small-K tiles whose fp32 FMA operands and accumulator fit the register budget (_resources):
    # the fp32 configs (exact fp32 has no tensor cores, so the large tiles above spill).
    (128, 64, 16, 3, 8),
    (64, 128, 16, 3, 8),
    (16, 64, 32, 4, 4),  # (32, 64, 32, 4, 4) was tried: 4 B spills in the 16-bit grad_weight on sm_90
]


def _config(bm, bn, bk, group, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


if INTERPRET:  # every config is interpreted in numpy: one small tile, still several groups/edges
    _CONFIGS = [_config(32, 32, 32, 2, 1, 1)]
else:
    _CONFIGS = [_config(bm, bn, bk, 8, s, w) for bm, bn, bk, s, w in _GPU_TILES]


def _prune_configs(configs, named_args, **kwargs):
    """Clamp each config's blocks to what M/N/K can fill (M=1 needs no 256-row tile), dedupe, then keep
    the configs within the device's shared memory and, for fp32's FMA dots, its registers (_resources)."""
    args = {**named_args, **kwargs}
    caps = {"BLOCK_M": pow2_cap(args["M"]), "BLOCK_N": pow2_cap(args["N"]), "BLOCK_K": pow2_cap(args["K"])}
    seen, pruned = set(), []
    for cfg in configs:
        meta = dict(cfg.kwargs)
        for name, cap in caps.items():
            meta[name] = min(meta[name], cap)
        sig = (tuple(sorted(meta.items())), cfg.num_stages, cfg.num_warps)
        if sig not in seen:
            seen.add(sig)
            pruned.append(triton.Config(meta, num_stages=cfg.num_stages, num_warps=cfg.num_warps))
    a_bytes, b_bytes = _resources.element_bytes(args["a_ptr"]), _resources.element_bytes(args["b_ptr"])
    a_tiles = 2 if args["PROLOGUE"] != 0 else 1  # the prologue loads y's tile next to A's

    def stage_bytes(cfg):
        bm, bn, bk = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"]
        return a_tiles * bm * bk * a_bytes + bk * bn * b_bytes

    def fp32_tiles(cfg):
        bm, bn, bk = cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_K"]
        return bm * bk + bk * bn + bm * bn

    fp32 = args["F32_DOT"] and not INTERPRET  # the interpreter's bf16 upcast is not an FMA dot
    return _resources.keep(pruned, stage_bytes, _resources.smem_limit(args["a_ptr"]), fp32_tiles if fp32 else None,
                           acc_elems=lambda cfg: cfg.kwargs["BLOCK_M"] * cfg.kwargs["BLOCK_N"],
                           acc_budget=None if fp32 else _resources.tc_acc_budget(args["a_ptr"], a_tiles == 2))


@triton.jit
def _fused_gemm_kernel(
    a_ptr, y_ptr, b_ptr, bias_ptr, c_ptr, rowsum_ptr,
    M, N, K,
    M_KEY, N_KEY, K_KEY,  # autotune key only: M, N, K bucketed (_common.tune_key); unused in the body
    stride_am, stride_ak, stride_ym, stride_yk, stride_bk, stride_bn, stride_bias, stride_cm, stride_cn,
    negative_slope,
    PROLOGUE: tl.constexpr,  # activation whose derivative (from y) scales A as it is loaded; 0 = none
    EPILOGUE: tl.constexpr,  # activation applied to acc (+ bias) before the store; 0 = none
    HAS_BIAS: tl.constexpr,
    ROW_SUM: tl.constexpr,  # also write sum_k prologue(A)[m, k] to rowsum_ptr (the grad_bias)
    COMPUTE_C: tl.constexpr,  # False: only the row sums (grad_bias without grad_weight)
    F32_DOT: tl.constexpr,  # dot in exact fp32 (no TF32): fp32 operands, and bf16 under the interpreter
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid_m, pid_n = grouped_tile_ids(tl.program_id(0), M, N, BLOCK_M, BLOCK_N, GROUP_M)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    rows = offs_m.to(tl.int64)
    cols = offs_n.to(tl.int64)

    a_ptrs = a_ptr + rows[:, None] * stride_am + offs_k[None, :] * stride_ak
    y_ptrs = y_ptr + rows[:, None] * stride_ym + offs_k[None, :] * stride_yk
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)

    for k0 in range(0, K, BLOCK_K):
        mask_k = offs_k < K - k0
        a_mask = mask_m[:, None] & mask_k[None, :]
        a = tl.load(a_ptrs, mask=a_mask, other=0.0)
        g = a.to(tl.float32)  # dead code unless the prologue or the row sum reads it
        if PROLOGUE != 0:
            y = tl.load(y_ptrs, mask=a_mask, other=0.0).to(tl.float32)
            g = grad_from_output(g, y, PROLOGUE, negative_slope)
            a = g.to(b_ptr.dtype.element_ty)
        if ROW_SUM:
            if pid_n == 0:
                row_sum += tl.sum(g, axis=1)
        if COMPUTE_C:
            b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            if F32_DOT:
                acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(a, b, acc)
        a_ptrs += BLOCK_K * stride_ak
        y_ptrs += BLOCK_K * stride_yk
        b_ptrs += BLOCK_K * stride_bk

    if COMPUTE_C:
        out = bias_activation_epilogue(acc, bias_ptr, offs_n, mask_n, stride_bias, HAS_BIAS, EPILOGUE, negative_slope)
        c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
        tl.store(c_ptrs, out.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])
    if ROW_SUM:
        if pid_n == 0:
            tl.store(rowsum_ptr + offs_m, row_sum.to(rowsum_ptr.dtype.element_ty), mask=mask_m)


def _autotuned():
    return triton.autotune(configs=_CONFIGS, key=["M_KEY", "N_KEY", "K_KEY"],
                           prune_configs_by={"early_config_prune": _prune_configs})(_fused_gemm_kernel)


# Separate autotune caches: the three GEMMs of one layer differ in layout and fusions.
_forward_gemm = _autotuned()
_grad_x_gemm = _autotuned()
_grad_weight_gemm = _autotuned()


def _launch(kernel, a, a_strides, y, y_strides, b, b_strides, bias, c, rowsum, M, N, K, *, prologue=0,
            epilogue=0, negative_slope=0.0, compute_c=True):
    """Run one GEMM; ``y``/``bias``/``c``/``rowsum`` may be None (a dummy pointer is passed, never read)."""
    dummy = a
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    c_strides = (c.stride(0), c.stride(1)) if c is not None else (0, 0)
    with device_guard(a):
        kernel[grid](
            a, dummy if y is None else y, b, dummy if bias is None else bias, dummy if c is None else c,
            dummy if rowsum is None else rowsum,
            M, N, K, tune_key(M), tune_key(N), tune_key(K),
            a_strides[0], a_strides[1], y_strides[0], y_strides[1], b_strides[0], b_strides[1],
            0 if bias is None else bias.stride(0), c_strides[0], c_strides[1],
            float(negative_slope),
            PROLOGUE=int(prologue), EPILOGUE=int(epilogue), HAS_BIAS=bias is not None,
            ROW_SUM=rowsum is not None, COMPUTE_C=bool(compute_c), F32_DOT=f32_dot(b.dtype),
        )


def _check(x: Tensor, weight: Tensor, activation: int) -> None:
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"fused_linear (triton): expected x [M, K] and weight [N, K], got x {tuple(x.shape)} "
                         f"and weight {tuple(weight.shape)}")
    if x.dtype != weight.dtype or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"fused_linear (triton): x and weight must share a float32/float16/bfloat16 dtype, "
                        f"got {x.dtype} and {weight.dtype}")
    check_code(activation, "fused_linear")


def fused_linear_forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: int,
                         negative_slope: float) -> Tensor:
    """act(x @ weight.T + bias) as a contiguous [M, N] tensor in x.dtype; x and weight may have any strides."""
    _check(x, weight, activation)
    (M, K), N = x.shape, weight.shape[0]
    out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    if M == 0 or N == 0:
        return out
    _launch(_forward_gemm, x, x.stride(), None, (0, 0), weight, (weight.stride(1), weight.stride(0)), bias, out,
            None, M, N, K, epilogue=activation, negative_slope=negative_slope)
    return out


def fused_linear_backward(grad_out: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor, activation: int,
                          negative_slope: float, need_x: bool, need_weight: bool, need_bias: bool):
    """(grad_x, grad_weight, grad_bias) from the saved output y, None where not needed.

    ``g = grad_out * act'(y)`` is formed inside the GEMMs' loads, never stored; grad_bias
    comes out of the grad_weight kernel. y may be None for identity (activation 0).
    """
    _check(x, weight, activation)
    (M, K), N = x.shape, weight.shape[0]
    if tuple(grad_out.shape) != (M, N):
        raise ValueError(f"fused_linear (triton): grad_out must have shape {(M, N)}, got {tuple(grad_out.shape)}")
    act = int(activation)
    if act != 0 and (y is None or tuple(y.shape) != (M, N)):
        raise ValueError(f"fused_linear (triton): the saved output y [{M}, {N}] is needed for activation {act}, "
                         f"got {None if y is None else tuple(y.shape)}")
    if act == 0:
        y = None
    go_s = (grad_out.stride(0), grad_out.stride(1))
    y_s = (y.stride(0), y.stride(1)) if y is not None else (0, 0)

    grad_x = grad_w = grad_b = None
    if need_x:
        grad_x = torch.empty((M, K), device=x.device, dtype=x.dtype)
        if M > 0:  # C[M, K] = g[M, N] @ W[N, K]: the reduction runs over N
            _launch(_grad_x_gemm, grad_out, go_s, y, y_s, weight, weight.stride(), None, grad_x, None, M, K, N,
                    prologue=act, negative_slope=negative_slope)
    if need_weight or need_bias:
        grad_w = torch.empty((N, K), device=x.device, dtype=weight.dtype) if need_weight else None
        grad_b = torch.empty((N,), device=x.device, dtype=weight.dtype) if need_bias else None
        if M == 0:  # an empty batch contributes nothing
            grad_w = grad_w.zero_() if need_weight else None
            grad_b = grad_b.zero_() if need_bias else None
        else:  # C[N, K] = g.T[N, M] @ x[M, K]: A is grad_out (and y) with swapped strides
            _launch(_grad_weight_gemm, grad_out, go_s[::-1], y, y_s[::-1], x, x.stride(), None, grad_w, grad_b,
                    N, K if need_weight else 1, M, prologue=act, negative_slope=negative_slope,
                    compute_c=need_weight)
    return grad_x, grad_w, grad_b


def aot_launches():
    """(label, thunk) pairs calling this module's launchers on meta tensors, for the ahead-of-time
    compile check (:mod:`fastgan_kernels.aot`): every dtype, the forward and both gradient GEMMs,
    LeakyReLU (the GAN layers' activation; the others change a few epilogue registers)."""
    M, N, K = 1024, 4096, 4096  # large enough that no config is clamped by the shape
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x, w = torch.empty(M, K, device="meta", dtype=dtype), torch.empty(N, K, device="meta", dtype=dtype)
        b, y = torch.empty(N, device="meta", dtype=dtype), torch.empty(M, N, device="meta", dtype=dtype)
        name = str(dtype).removeprefix("torch.")
        yield f"forward {name}", lambda x=x, w=w, b=b: fused_linear_forward(x, w, b, 2, 0.2)
        yield f"backward {name}", lambda x=x, w=w, y=y: fused_linear_backward(y, y, x, w, 2, 0.2, True, True, True)

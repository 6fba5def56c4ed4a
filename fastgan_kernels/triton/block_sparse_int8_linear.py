"""Triton kernel of ``fastgan::block_sparse_int8_linear``: the int8 linear over a BSR int8 weight.

W [N, K] int8 is ``(values [nnz, bn, bk], row_ptr, col_idx)`` (:mod:`fastgan_kernels.ops.bsr`), with
per-output-channel ``w_scale [N]``. One program computes ``y[m-tile, block row r]``: an int32
``[BLOCK_M, SUB_OUT]`` accumulator over the kept blocks of row r only, ``tl.dot`` of int8 tiles
``x[m-tile, block columns] @ values[b].T`` (int8 tensor cores on GPU), then the int8 epilogue shared
with the dense kernel (:func:`.int8_linear.store_int8_epilogue`: scales, bias, activation, float /
requantised int8 / raw int32 store).

Tiles. int8 ``tl.dot`` needs a reduction of at least 32: 16-wide blocks are read as 32-wide tiles
whose second half is masked to zero (in x and in values), wider blocks are cut into sub-tiles of
at most 128 (the reduction as extra loop steps); the output side of a block is cut at 128 (a
second grid axis). Ragged N / K: x columns past K load 0 (the zero padding of values meets zeros),
stores are masked to N. Programs take the block rows heavy-first (``heavy_first``, as the fp32
block-sparse kernel does) so skewed patterns balance. Under ``TRITON_INTERPRET=1`` one small
config runs, with 32-wide sub-tiles so 64-wide blocks exercise the sub-tiling; on GPU BLOCK_M /
num_stages / num_warps are autotuned per shape (the batch bucketed to a power of two).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import _resources
from ._common import INTERPRET, device_guard, pow2_cap, tune_key
from .block_sparse_linear import heavy_first
from .int8_linear import MAX_K, _OUT_KIND, _int8_dot_via_f32, store_int8_epilogue

if INTERPRET:
    _TILES = [(16, 1, 1)]
    _SUB = (32, 32)  # caps of a sub-tile: (output side, reduction side)
else:  # (BLOCK_M, num_stages, num_warps); (128, 4, 4) spilled 4-8 B (sm_80 int8 out, sm_100): 128 rows take 8 warps
    _TILES = [(128, 3, 8), (64, 3, 4), (64, 4, 4), (32, 4, 4), (32, 5, 2), (16, 4, 2), (16, 3, 4)]
    _SUB = (128, 128)
_MIN_RED = 32  # int8 dot: K-step 32


def _prune(configs, named_args, **kwargs):
    """No BLOCK_M larger than M needs (M = 1 runs 16-row tiles); dedupe what that merges."""
    cap = pow2_cap({**named_args, **kwargs}["M"])
    seen, out = set(), []
    for cfg in configs:
        key = (min(cfg.kwargs["BLOCK_M"], cap), cfg.num_stages, cfg.num_warps)
        if key not in seen:
            seen.add(key)
            out.append(triton.Config({"BLOCK_M": key[0]}, num_stages=key[1], num_warps=key[2]))
    # Shared memory and accumulator registers per arch (_resources), as for the dense int8 GEMM:
    # one stage holds an x tile [BLOCK_M, SUB_IN] and a block tile [SUB_OUT, SUB_IN], one byte each.
    args = {**named_args, **kwargs}
    sub_in, sub_out = args["SUB_IN"], args["SUB_OUT"]
    return _resources.keep(out, lambda cfg: (cfg.kwargs["BLOCK_M"] + sub_out) * sub_in,
                           _resources.smem_limit(args["x_ptr"]),
                           acc_elems=lambda cfg: cfg.kwargs["BLOCK_M"] * sub_out,
                           acc_budget=_resources.tc_acc_budget(args["x_ptr"], prologue=False, int8=True))


@triton.jit
def _bsr_int8_kernel(
    x_ptr, v_ptr, ptr_ptr, idx_ptr, order_ptr, x_scale_ptr, w_scale_ptr, bias_ptr, out_scale_ptr, c_ptr,
    M, K, N,
    M_KEY,  # autotune key only: the batch M bucketed (_common.tune_key); unused in the body
    stride_xm, stride_xk, stride_cm, stride_xs, stride_ws, stride_bias,
    negative_slope,
    BN: tl.constexpr, BK: tl.constexpr,  # the block
    SUB_IN: tl.constexpr, SUB_OUT: tl.constexpr,  # sub-tile of a block (SUB_IN may exceed BK: masked)
    OUT_KIND: tl.constexpr, X_PER_TOKEN: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
    I8_VIA_F32: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    tiles_m = tl.cdiv(M, BLOCK_M)
    pid = tl.program_id(0)
    line = tl.load(order_ptr + pid // tiles_m)  # heavy block rows first
    offs_m = (pid % tiles_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    rows = offs_m.to(tl.int64)
    o_in_blk = tl.program_id(1) * SUB_OUT + tl.arange(0, SUB_OUT)
    offs_n = line.to(tl.int64) * BN + o_in_blk
    mask_n = offs_n < N
    offs_i = tl.arange(0, SUB_IN)
    N_SUB: tl.constexpr = (BK + SUB_IN - 1) // SUB_IN
    start = tl.load(ptr_ptr + line)
    end = tl.load(ptr_ptr + line + 1)

    acc = tl.zeros((BLOCK_M, SUB_OUT), dtype=tl.int32)
    for step in range(start * N_SUB, end * N_SUB):  # (kept block, reduction sub-tile) pairs
        j = step // N_SUB
        i_in_blk = (step % N_SUB) * SUB_IN + offs_i
        in_blk = i_in_blk < BK  # False only for the masked half of a 16-wide block
        cols = tl.load(idx_ptr + j).to(tl.int64) * BK + i_in_blk
        a = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :] * stride_xk,
                    mask=mask_m[:, None] & (in_blk & (cols < K))[None, :], other=0)
        # values[j].T as [SUB_IN, SUB_OUT]: element (i, o) at j * BN * BK + o * BK + i.
        v = tl.load(v_ptr + j.to(tl.int64) * (BN * BK) + o_in_blk[None, :] * BK + i_in_blk[:, None],
                    mask=in_blk[:, None], other=0)
        if I8_VIA_F32:
            acc += tl.dot(a.to(tl.float32), v.to(tl.float32), input_precision="ieee").to(tl.int32)
        else:
            acc = tl.dot(a, v, acc)

    c_ptrs = c_ptr + rows[:, None] * stride_cm + offs_n[None, :]
    store_int8_epilogue(acc, c_ptrs, mask_m[:, None] & mask_n[None, :], rows, offs_n, mask_m, mask_n,
                        x_scale_ptr, stride_xs, w_scale_ptr, stride_ws, bias_ptr, stride_bias, out_scale_ptr,
                        negative_slope, OUT_KIND, X_PER_TOKEN, HAS_BIAS, ACTIVATION, BLOCK_M, SUB_OUT)


_kernel = triton.autotune(configs=[triton.Config({"BLOCK_M": bm}, num_stages=s, num_warps=w) for bm, s, w in _TILES],
                          key=["M_KEY", "K", "N", "BN", "BK"],
                          prune_configs_by={"early_config_prune": _prune})(_bsr_int8_kernel)


def bsr_int8_linear(xq: Tensor, x_scale: Tensor, values: Tensor, row_ptr: Tensor, col_idx: Tensor, w_scale: Tensor,
                    bias: Optional[Tensor], out_features: int, activation: int, negative_slope: float,
                    out_dtype: torch.dtype, out_scale: Optional[Tensor]) -> Tensor:
    """The op on an int8 ``xq [M, K]`` (any strides) with ``x_scale`` [M] or [1]; [M, N] of ``out_dtype``.

    The op layer (ops/block_sparse_int8_linear.py) validated shapes, dtypes and devices; here only
    what the kernel relies on is checked.
    """
    fn = "block_sparse_int8_linear"
    if xq.dim() != 2 or values.dim() != 3 or xq.dtype != torch.int8 or values.dtype != torch.int8:
        raise ValueError(f"{fn} (triton): expected int8 xq [M, K] and int8 values [nnz, bn, bk], got "
                         f"{xq.dtype} {tuple(xq.shape)} and {values.dtype} {tuple(values.shape)}")
    if not values.is_contiguous():
        raise ValueError(f"{fn} (triton): values must be contiguous [nnz, bn, bk]")
    (M, K), N = xq.shape, int(out_features)
    _, bn, bk = values.shape
    if K > MAX_K:
        raise ValueError(f"{fn} (triton): K={K} exceeds {MAX_K}, the int32 accumulator could overflow")
    if row_ptr.numel() != -(-N // bn) + 1:
        raise ValueError(f"{fn} (triton): row_ptr must have {-(-N // bn) + 1} entries, got {row_ptr.numel()}")
    kind = _OUT_KIND[out_dtype]
    out = torch.empty((M, N), device=xq.device, dtype=out_dtype)
    if M == 0:
        return out
    sub_out, sub_in = min(bn, _SUB[0]), max(_MIN_RED, min(bk, _SUB[1]))
    per_token = kind != 2 and x_scale.numel() == M
    order = heavy_first(row_ptr)
    grid = lambda meta: (order.numel() * triton.cdiv(M, meta["BLOCK_M"]), bn // sub_out)  # noqa: E731
    with device_guard(xq):
        _kernel[grid](
            xq, values, row_ptr, col_idx, order, x_scale, w_scale, xq if bias is None else bias,
            xq if out_scale is None else out_scale, out,
            M, K, N, tune_key(M),
            xq.stride(0), xq.stride(1), out.stride(0), x_scale.stride(0) if x_scale.dim() == 1 else 0,
            w_scale.stride(0), 0 if bias is None else bias.stride(0),
            float(negative_slope),
            BN=bn, BK=bk, SUB_IN=sub_in, SUB_OUT=sub_out,
            OUT_KIND=kind, X_PER_TOKEN=per_token, HAS_BIAS=bias is not None and kind != 2,
            ACTIVATION=int(activation) if kind != 2 else 0, I8_VIA_F32=_int8_dot_via_f32(),
        )
    return out


def aot_launches():
    """(label, thunk) pairs calling this module's launcher on meta tensors, for the ahead-of-time
    compile check (:mod:`fastgan_kernels.aot`): 16-wide blocks (the masked 32-wide reduction tile),
    32 x 32 (``prune``'s default) and 128 x 128 (sub-tiles at the caps), each with the three
    epilogues (float with per-token scales, requantised int8, raw int32)."""
    M, N, K, nnz = 1024, 4096, 4096, 1024
    meta = dict(device="meta")
    xq = torch.empty(M, K, dtype=torch.int8, **meta)
    xs, ws, b, one = torch.empty(M, **meta), torch.empty(N, **meta), torch.empty(N, **meta), torch.empty(1, **meta)
    for block in (16, 32, 128):
        ptr = torch.empty(N // block + 1, dtype=torch.int32, **meta)
        idx = torch.empty(nnz, dtype=torch.int32, **meta)
        v = torch.empty(nnz, block, block, dtype=torch.int8, **meta)
        yield f"block {block} bf16 out", lambda v=v, ptr=ptr, idx=idx: bsr_int8_linear(
            xq, xs, v, ptr, idx, ws, b, N, 2, 0.2, torch.bfloat16, None)
        yield f"block {block} int8 out", lambda v=v, ptr=ptr, idx=idx: bsr_int8_linear(
            xq, one, v, ptr, idx, ws, b, N, 2, 0.2, torch.int8, one)
        yield f"block {block} int32 out", lambda v=v, ptr=ptr, idx=idx: bsr_int8_linear(
            xq, one, v, ptr, idx, ws, None, N, 0, 0.0, torch.int32, None)

"""Triton kernels of ``fastgan::block_sparse_linear``: ``act(x @ W.T + b)`` with W in BSR, and its gradients.

W [N, K] is stored as ``(values [nnz, bn, bk], row_ptr, col_idx)`` (see :mod:`fastgan_kernels.ops.bsr`);
only kept blocks are ever read. Two jitted kernels cover the three products:

===========  ===============================  =========================================================
call         kernel                           what one program computes
===========  ===============================  =========================================================
forward      :func:`_bsr_dense_kernel`        y[m-tile, block row r] = act(sum over r's kept blocks b of
                                              x[m-tile, cols of b] @ values[b].T + bias), epilogue fused
grad_x       :func:`_bsr_dense_kernel`        gx[m-tile, block col c] = sum over c's kept blocks b (W.T's
                                              structure: t_row_ptr, t_col_idx, t_block) of
                                              g[m-tile, rows of b] @ values[b]; g = grad_out * act'(y)
                                              formed in the prologue as grad_out tiles are loaded
grad_values  :func:`_bsr_sddmm_kernel`        gv[b] = g[:, rows of b].T @ x[:, cols of b] for one kept
                                              block b, reducing over the batch in BLOCK_M steps (an SDDMM:
                                              pruned blocks are never computed); grad_bias fused
===========  ===============================  =========================================================

Tiling. The dense-output kernel walks one line of a BSR structure (a block row of W for the
forward, a block column for grad_x) and accumulates ``tl.dot`` of ``[BLOCK_M, bk] x [bk, bn]``
tiles into an fp32 ``[BLOCK_M, bn]`` register tile; the values block is read through strides, so
``values[b].T`` (forward) and ``values[b]`` (grad_x) are the same memory. Blocks above 64 (reduction
side) or 128 (output side) are cut into sub-tiles -- the reduction as extra steps of the same loop,
the output as a second grid axis -- so 256 x 256 blocks stay within registers and shared memory;
blocks up to 64 x 128 are one dot per kept block (the SDDMM's [bn, bk] output is cut at 64 x 64 the
same way, one program per sub-tile). Ragged N/K: x (resp. g) columns past K (N) are
masked to 0, so the zero padding of ``values`` meets zeros, and stores are masked. fp32 runs
``input_precision="ieee"`` (exact, no TF32), fp16/bf16 run on tensor cores with an fp32
accumulator (bf16 upcast under the interpreter): the rule of :mod:`.fused_linear`.

Balancing. Work per program is proportional to its line's kept blocks, and pruned layers are
skewed (dense rows next to empty ones). Programs are therefore ordered heavy-first: ``order`` =
the lines sorted by block count, descending (a device argsort, no host sync), and program
``pid`` takes line ``order[pid // tiles_m]``, M tile ``pid % tiles_m``. The hardware dispatches
programs roughly in pid order, so this is longest-processing-time-first list scheduling (Graham's
bound: makespan within 4/3 of optimal, if dispatch is greedy in pid order); empty lines (only
``act(bias)``) run last and fill the gaps. Splitting long rows across programs was rejected: the
activation is not linear, so the partial sums would need a workspace and a second epilogue pass,
or atomics (fp32 only, not deterministic).
The SDDMM needs no ordering: every program does the same work (one block, the whole batch); its
programs follow W.T's order, so neighbours share x's column block in L2.

grad_bias. The SDDMM programs of the *first* kept block of each block row (those of its first bk
sub-tile) also sum their fp32 g tiles over the batch: that is grad_bias for the row's bn
columns, no atomics. Rows with no kept block (or every row, when grad_values is not needed) get
it from a second launch of the same kernel with ``COMPUTE_V=False`` that only reduces g.

Under ``TRITON_INTERPRET=1`` a single small config and 32-wide sub-tiles are used (so 64 blocks
exercise the sub-tiling); on GPU BLOCK_M / num_warps / num_stages are autotuned per shape
(the batch bucketed to a power of two, _common.tune_key).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import _resources
from ._activation import check_code, bias_activation_epilogue, grad_from_output
from ._common import INTERPRET, device_guard, f32_dot, pow2_cap, tune_key

if INTERPRET:  # interpreted in numpy: one small tile; M = 17 still spans two tiles
    _DENSE_TILES = _SDDMM_TILES = [(16, 1, 1)]
    _DENSE_SUB = _SDDMM_SUB = (32, 32)  # (output side, reduction side) caps of a sub-tile
else:  # (BLOCK_M, num_stages, num_warps)
    # (16, 3, 8): fp32 with 128-wide sub-tiles (blocks >= 128) within the FMA register budget (_resources)
    _DENSE_TILES = [(128, 3, 8), (128, 4, 4), (64, 3, 4), (64, 4, 4), (32, 4, 4), (32, 5, 2), (16, 4, 2),
                    (16, 3, 4), (16, 3, 8)]
    _SDDMM_TILES = [(128, 3, 8), (128, 3, 4), (64, 4, 4), (64, 3, 8), (32, 5, 4), (32, 4, 2)]
    _DENSE_SUB = (128, 64)
    _SDDMM_SUB = (64, 64)


def _configs(tiles):
    return [triton.Config({"BLOCK_M": bm}, num_stages=s, num_warps=w) for bm, s, w in tiles]


def _tiles(args, bm: int) -> tuple[int, int, int]:
    """Elements of one step's (A or g.T, V or x, accumulator) tiles: what a config asks of the SM."""
    if "SUB_OUT" in args:  # dense kernel: A [BM, SUB_IN], V [SUB_IN, SUB_OUT], acc [BM, SUB_OUT]
        red, out = args["SUB_IN"], args["SUB_OUT"]
        return bm * red, red * out, bm * out
    # SDDMM: g.T [SUB_N, BM], x [BM, SUB_K], acc [SUB_N, SUB_K]
    return args["SUB_N"] * bm, bm * args["SUB_K"], args["SUB_N"] * args["SUB_K"]


def _prune(configs, named_args, **kwargs):
    """No BLOCK_M larger than M needs (M = 1 runs 16-row tiles); dedupe what that merges; then keep the
    configs within the device's shared memory and, for fp32's FMA dots, its registers (_resources)."""
    args = {**named_args, **kwargs}
    cap = pow2_cap(args["M"])
    seen, out = set(), []
    for cfg in configs:
        bm = min(cfg.kwargs["BLOCK_M"], cap)
        if (bm, cfg.num_stages, cfg.num_warps) not in seen:
            seen.add((bm, cfg.num_stages, cfg.num_warps))
            out.append(triton.Config({"BLOCK_M": bm}, num_stages=cfg.num_stages, num_warps=cfg.num_warps))
    x = args["a_ptr"] if "a_ptr" in args else args["x_ptr"]
    elem = _resources.element_bytes(x)
    a_tiles = 2 if args["PROLOGUE"] != 0 else 1  # the prologue loads y's tile next to A's (g's)

    def stage_bytes(cfg):
        a, b, _ = _tiles(args, cfg.kwargs["BLOCK_M"])
        return (a_tiles * a + b) * elem

    fp32 = args["F32_DOT"] and not INTERPRET
    return _resources.keep(out, stage_bytes, _resources.smem_limit(x),
                           (lambda cfg: sum(_tiles(args, cfg.kwargs["BLOCK_M"]))) if fp32 else None,
                           acc_elems=lambda cfg: _tiles(args, cfg.kwargs["BLOCK_M"])[2],
                           acc_budget=None if fp32 else _resources.tc_acc_budget(x, a_tiles == 2))


@triton.jit
def _bsr_dense_kernel(
    a_ptr, y_ptr, v_ptr, bias_ptr, c_ptr, ptr_ptr, idx_ptr, perm_ptr, order_ptr,
    M, IN, OUT,
    M_KEY,  # autotune key only: the batch M bucketed (_common.tune_key); unused in the body
    stride_am, stride_ai, stride_ym, stride_yi, stride_vi, stride_vo, stride_cm, stride_co, stride_bias,
    negative_slope,
    D_IN: tl.constexpr, D_OUT: tl.constexpr,  # block extent along A's columns (reduction) and C's columns
    SUB_IN: tl.constexpr, SUB_OUT: tl.constexpr,  # sub-tile of the block (== D_* for blocks up to the caps)
    PROLOGUE: tl.constexpr,  # activation whose derivative (from y) scales A as it is loaded; 0 = none
    EPILOGUE: tl.constexpr,  # activation applied to acc (+ bias) before the store; 0 = none
    HAS_BIAS: tl.constexpr,
    HAS_PERM: tl.constexpr,  # the structure's entries index values through perm (W.T's t_block)
    F32_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """C[M, OUT] = epilogue(sum over line's blocks of prologue(A)[:, block cols] @ V[block]).

    A line is one BSR row of the structure (ptr, idx[, perm]); V[b] is the [D_IN, D_OUT] view
    of values[b] given by (stride_vi, stride_vo).
    """
    tiles_m = tl.cdiv(M, BLOCK_M)
    pid = tl.program_id(0)
    line = tl.load(order_ptr + pid // tiles_m)  # heavy lines first: see the module docstring
    offs_m = (pid % tiles_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < M
    rows = offs_m.to(tl.int64)
    o_in_blk = tl.program_id(1) * SUB_OUT + tl.arange(0, SUB_OUT)
    offs_o = line.to(tl.int64) * D_OUT + o_in_blk
    mask_o = offs_o < OUT
    offs_i = tl.arange(0, SUB_IN)
    N_SUB: tl.constexpr = D_IN // SUB_IN
    start = tl.load(ptr_ptr + line)
    end = tl.load(ptr_ptr + line + 1)

    acc = tl.zeros((BLOCK_M, SUB_OUT), dtype=tl.float32)
    for step in range(start * N_SUB, end * N_SUB):  # (kept block, reduction sub-tile) pairs
        j = step // N_SUB
        i_in_blk = (step % N_SUB) * SUB_IN + offs_i
        if HAS_PERM:
            blk = tl.load(perm_ptr + j)
        else:
            blk = j
        cols = tl.load(idx_ptr + j).to(tl.int64) * D_IN + i_in_blk
        mask_a = mask_m[:, None] & (cols < IN)[None, :]
        a = tl.load(a_ptr + rows[:, None] * stride_am + cols[None, :] * stride_ai, mask=mask_a, other=0.0)
        if PROLOGUE != 0:
            y = tl.load(y_ptr + rows[:, None] * stride_ym + cols[None, :] * stride_yi, mask=mask_a, other=0.0)
            a = grad_from_output(a.to(tl.float32), y.to(tl.float32), PROLOGUE, negative_slope)
            a = a.to(v_ptr.dtype.element_ty)
        # In-block offsets are always valid: padding rows/columns of a block hold zeros.
        v = tl.load(v_ptr + blk.to(tl.int64) * (D_IN * D_OUT) + i_in_blk[:, None] * stride_vi
                    + o_in_blk[None, :] * stride_vo)
        if F32_DOT:
            acc = tl.dot(a.to(tl.float32), v.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(a, v, acc)

    out = bias_activation_epilogue(acc, bias_ptr, offs_o, mask_o, stride_bias, HAS_BIAS, EPILOGUE, negative_slope)
    c_ptrs = c_ptr + rows[:, None] * stride_cm + offs_o[None, :] * stride_co
    tl.store(c_ptrs, out.to(c_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_o[None, :])


@triton.jit
def _bsr_sddmm_kernel(
    g_ptr, y_ptr, x_ptr, gv_ptr, gb_ptr, row_ptr_ptr, col_idx_ptr, t_col_idx_ptr, t_block_ptr,
    M, N, K,
    M_KEY,  # autotune key only, as in _bsr_dense_kernel
    stride_gm, stride_gn, stride_ym, stride_yn, stride_xm, stride_xk,
    negative_slope,
    BN: tl.constexpr, BK: tl.constexpr, SUB_N: tl.constexpr, SUB_K: tl.constexpr,
    PROLOGUE: tl.constexpr,
    COMPUTE_V: tl.constexpr,  # True: program (j, sub_n, sub_k) = kept block t_block[j]; False: block row j
    ROW_SUM: tl.constexpr,  # write grad_bias (with COMPUTE_V: from each row's first kept block)
    ALL_ROWS: tl.constexpr,  # without COMPUTE_V: bias for every row, not only the rows with no block
    F32_DOT: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """gv[b][sub-tile] = g[:, rows of b].T @ x[:, cols of b] over the whole batch; grad_bias on the side."""
    job = tl.program_id(0)
    sub_k = tl.program_id(2)
    n_in_blk = tl.program_id(1) * SUB_N + tl.arange(0, SUB_N)
    k_in_blk = sub_k * SUB_K + tl.arange(0, SUB_K)
    if COMPUTE_V:  # jobs in W.T's order: neighbours share x's column block
        blk = tl.load(t_block_ptr + job)
        row = tl.load(t_col_idx_ptr + job)
        col = tl.load(col_idx_ptr + blk)
        do_sum = (tl.load(row_ptr_ptr + row) == blk) & (sub_k == 0)
        m_end = M
    else:
        blk = job
        row = job
        col = job
        empty = tl.load(row_ptr_ptr + row) == tl.load(row_ptr_ptr + row + 1)
        do_sum = empty | ALL_ROWS
        m_end = tl.where(do_sum, M, 0)  # rows covered by the other launch do nothing
    offs_n = row.to(tl.int64) * BN + n_in_blk
    offs_k = col.to(tl.int64) * BK + k_in_blk
    mask_n = offs_n < N
    mask_k = offs_k < K

    acc = tl.zeros((SUB_N, SUB_K), dtype=tl.float32)
    row_sum = tl.zeros((SUB_N,), dtype=tl.float32)
    for m0 in range(0, m_end, BLOCK_M):
        offs_m = m0 + tl.arange(0, BLOCK_M)
        mask_m = offs_m < M
        rows = offs_m.to(tl.int64)
        mask_g = mask_n[:, None] & mask_m[None, :]
        g = tl.load(g_ptr + offs_n[:, None] * stride_gn + rows[None, :] * stride_gm, mask=mask_g, other=0.0)
        g = g.to(tl.float32)  # g.T tile [SUB_N, BLOCK_M]
        if PROLOGUE != 0:
            y = tl.load(y_ptr + offs_n[:, None] * stride_yn + rows[None, :] * stride_ym, mask=mask_g, other=0.0)
            g = grad_from_output(g, y.to(tl.float32), PROLOGUE, negative_slope)
        if ROW_SUM:
            if do_sum:
                row_sum += tl.sum(g, axis=1)
        if COMPUTE_V:
            x = tl.load(x_ptr + rows[:, None] * stride_xm + offs_k[None, :] * stride_xk,
                        mask=mask_m[:, None] & mask_k[None, :], other=0.0)
            if F32_DOT:
                acc = tl.dot(g, x.to(tl.float32), acc, input_precision="ieee")
            else:
                acc = tl.dot(g.to(x_ptr.dtype.element_ty), x, acc)

    if COMPUTE_V:
        gv_ptrs = gv_ptr + blk.to(tl.int64) * (BN * BK) + n_in_blk[:, None] * BK + k_in_blk[None, :]
        tl.store(gv_ptrs, acc.to(gv_ptr.dtype.element_ty))
    if ROW_SUM:
        if do_sum:  # (a scalar-and-vector mask would do, but the 3.9 interpreter rejects its int32 result)
            tl.store(gb_ptr + offs_n, row_sum.to(gb_ptr.dtype.element_ty), mask=mask_n)


def _autotuned(kernel, tiles, key):
    return triton.autotune(configs=_configs(tiles), key=key, prune_configs_by={"early_config_prune": _prune})(kernel)


# Separate autotune caches (Triton adds the tensors' dtypes to each key).
_DENSE_KEY = ["M_KEY", "IN", "OUT", "D_IN", "D_OUT"]
_forward_kernel = _autotuned(_bsr_dense_kernel, _DENSE_TILES, _DENSE_KEY)
_grad_x_kernel = _autotuned(_bsr_dense_kernel, _DENSE_TILES, _DENSE_KEY)
_grad_values_kernel = _autotuned(_bsr_sddmm_kernel, _SDDMM_TILES, ["M_KEY", "N", "K", "BN", "BK"])
_grad_bias_kernel = _autotuned(_bsr_sddmm_kernel, _SDDMM_TILES, ["M_KEY", "N", "K", "BN", "BK"])


def heavy_first(ptr: Tensor) -> Tensor:
    """The lines of a BSR structure (``row_ptr`` or ``t_row_ptr``) by kept-block count, descending (int32).

    Stable, so equal lines keep their natural order; runs on ptr's device without a host sync.
    """
    counts = ptr[1:] - ptr[:-1]
    return torch.argsort(counts, descending=True, stable=True).to(torch.int32)


def _launch_dense(kernel, a, y, values, v_strides, bias, out, ptr, idx, perm, order, d_in, d_out, *,
                  prologue=0, epilogue=0, negative_slope=0.0):
    """out[M, OUT] over the lines listed in ``order``; A [M, IN] = x (forward) or grad_out (grad_x)."""
    (M, IN), OUT = a.shape, out.shape[1]
    sub_out, sub_in = min(d_out, _DENSE_SUB[0]), min(d_in, _DENSE_SUB[1])
    grid = lambda meta: (order.numel() * triton.cdiv(M, meta["BLOCK_M"]), d_out // sub_out)  # noqa: E731
    y_strides = y.stride() if y is not None else (0, 0)
    with device_guard(a):
        kernel[grid](
            a, a if y is None else y, values, a if bias is None else bias, out, ptr, idx,
            idx if perm is None else perm, order,
            M, IN, OUT, tune_key(M),
            a.stride(0), a.stride(1), y_strides[0], y_strides[1], v_strides[0], v_strides[1],
            out.stride(0), out.stride(1), 0 if bias is None else bias.stride(0),
            float(negative_slope),
            D_IN=d_in, D_OUT=d_out, SUB_IN=sub_in, SUB_OUT=sub_out, PROLOGUE=int(prologue), EPILOGUE=int(epilogue),
            HAS_BIAS=bias is not None, HAS_PERM=perm is not None, F32_DOT=f32_dot(values.dtype),
        )


def _check(x: Tensor, values: Tensor, activation: int) -> None:
    if x.dim() != 2 or values.dim() != 3:
        raise ValueError(f"block_sparse_linear (triton): expected x [M, K] and values [nnz, bn, bk], got x "
                         f"{tuple(x.shape)} and values {tuple(values.shape)}")
    if x.dtype != values.dtype or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"block_sparse_linear (triton): x and values must share a float32/float16/bfloat16 dtype, "
                        f"got {x.dtype} and {values.dtype}")
    if not values.is_contiguous():
        raise ValueError("block_sparse_linear (triton): values must be contiguous [nnz, bn, bk]")
    check_code(activation, "block_sparse_linear")


def _check_ptr(ptr: Tensor, lines: int, name: str) -> None:
    if ptr.dim() != 1 or ptr.numel() != lines + 1:
        raise ValueError(f"block_sparse_linear (triton): {name} must have {lines + 1} entries, got "
                         f"{tuple(ptr.shape)}")


def bsr_linear_forward(x: Tensor, values: Tensor, row_ptr: Tensor, col_idx: Tensor, bias: Optional[Tensor],
                       out_features: int, activation: int, negative_slope: float) -> Tensor:
    """act(x @ W.T + bias) as a contiguous [M, N] tensor in x.dtype, reading only W's kept blocks."""
    _check(x, values, activation)
    (M, K), N = x.shape, int(out_features)
    _, bn, bk = values.shape
    _check_ptr(row_ptr, -(-N // bn), "row_ptr")
    out = torch.empty((M, N), device=x.device, dtype=x.dtype)
    if M == 0:
        return out
    # A = x [M, K]; V[b] = values[b].T, i.e. [bk, bn] with strides (1, bk).
    _launch_dense(_forward_kernel, x, None, values, (1, bk), bias, out, row_ptr, col_idx, None,
                  heavy_first(row_ptr), bk, bn, epilogue=activation, negative_slope=negative_slope)
    return out


def bsr_linear_backward(grad_out: Tensor, y: Optional[Tensor], x: Tensor, values: Tensor, row_ptr: Tensor,
                        col_idx: Tensor, t_row_ptr: Tensor, t_col_idx: Tensor, t_block: Tensor, activation: int,
                        negative_slope: float, need_x: bool, need_values: bool, need_bias: bool):
    """(grad_x [M, K], grad_values [nnz, bn, bk], grad_bias [N]), None where not needed.

    ``g = grad_out * act'(y)`` is formed in the kernels' loads, never stored; y may be None for
    identity (activation 0). t_* is W.T's structure from :func:`fastgan_kernels.ops.bsr.transpose_index`.
    """
    _check(x, values, activation)
    (M, K), N = x.shape, grad_out.shape[-1]
    nnz, bn, bk = values.shape
    nbr, nbc = -(-N // bn), -(-K // bk)
    if grad_out.dim() != 2 or grad_out.shape[0] != M:
        raise ValueError(f"block_sparse_linear (triton): grad_out must be [{M}, N], got {tuple(grad_out.shape)}")
    _check_ptr(row_ptr, nbr, "row_ptr")
    _check_ptr(t_row_ptr, nbc, "t_row_ptr")
    act = int(activation)
    if act != 0 and (y is None or tuple(y.shape) != (M, N)):
        raise ValueError(f"block_sparse_linear (triton): the saved output y [{M}, {N}] is needed for activation "
                         f"{act}, got {None if y is None else tuple(y.shape)}")
    y = None if act == 0 else y
    for name, t in (("grad_out", grad_out), ("y", y)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"block_sparse_linear (triton): {name} must have x's dtype {x.dtype}, got {t.dtype}")
    grad_x = grad_v = grad_b = None
    if need_x:
        grad_x = torch.empty((M, K), device=x.device, dtype=x.dtype)
        if M > 0:  # A = g [M, N]; V[b] = values[b], [bn, bk] with strides (bk, 1); lines = W's block columns
            _launch_dense(_grad_x_kernel, grad_out, y, values, (bk, 1), None, grad_x, t_row_ptr, t_col_idx, t_block,
                          heavy_first(t_row_ptr), bn, bk, prologue=act, negative_slope=negative_slope)
    if not (need_values or need_bias):
        return grad_x, grad_v, grad_b
    grad_v = torch.empty_like(values) if need_values else None
    grad_b = torch.empty((N,), device=x.device, dtype=values.dtype) if need_bias else None
    if M == 0:  # an empty batch contributes nothing
        return grad_x, None if grad_v is None else grad_v.zero_(), None if grad_b is None else grad_b.zero_()
    sub_n, sub_k = min(bn, _SDDMM_SUB[0]), min(bk, _SDDMM_SUB[1])
    y_s = y.stride() if y is not None else (0, 0)

    def launch(kernel, jobs, k_subs, compute_v, row_sum):
        grid = (jobs, bn // sub_n, k_subs)
        kernel[grid](
            grad_out, grad_out if y is None else y, x, values if grad_v is None else grad_v,
            values if grad_b is None else grad_b, row_ptr, col_idx, t_col_idx, t_block,
            M, N, K, tune_key(M), grad_out.stride(0), grad_out.stride(1), y_s[0], y_s[1], x.stride(0), x.stride(1),
            float(negative_slope), BN=bn, BK=bk, SUB_N=sub_n, SUB_K=sub_k, PROLOGUE=act, COMPUTE_V=compute_v,
            ROW_SUM=row_sum, ALL_ROWS=not need_values, F32_DOT=f32_dot(values.dtype),
        )

    with device_guard(x):
        if need_values and nnz > 0:  # one program per (kept block, sub-tile); bias from each row's first block
            launch(_grad_values_kernel, nnz, bk // sub_k, True, need_bias)
        if need_bias:  # rows without kept blocks (every row when grad_values is not needed)
            launch(_grad_bias_kernel, nbr, 1, False, True)
    return grad_x, grad_v, grad_b


def aot_launches():
    """(label, thunk) pairs calling this module's launchers on meta tensors, for the ahead-of-time
    compile check (:mod:`fastgan_kernels.aot`): every dtype, forward and backward (grad_x, the
    grad_values SDDMM, the grad_bias launch), LeakyReLU, with 32 x 32 blocks (the benchmarks' and
    ``prune``'s default) and 128 x 128 blocks (sub-tiles at the caps: the largest tiles any block gets)."""
    M, N, K, nnz = 1024, 4096, 4096, 1024
    meta = dict(device="meta")
    for block in (32, 128):
        nbr, nbc = N // block, K // block
        ptr, t_ptr = torch.empty(nbr + 1, dtype=torch.int32, **meta), torch.empty(nbc + 1, dtype=torch.int32, **meta)
        idx = torch.empty(nnz, dtype=torch.int32, **meta)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            x, y = torch.empty(M, K, dtype=dtype, **meta), torch.empty(M, N, dtype=dtype, **meta)
            v, b = torch.empty(nnz, block, block, dtype=dtype, **meta), torch.empty(N, dtype=dtype, **meta)
            name = f"{str(dtype).removeprefix('torch.')} block {block}"
            yield f"forward {name}", lambda x=x, v=v, b=b, ptr=ptr: bsr_linear_forward(x, v, ptr, idx, b, N, 2, 0.2)
            yield f"backward {name}", lambda x=x, y=y, v=v, ptr=ptr, t_ptr=t_ptr: bsr_linear_backward(
                y, y, x, v, ptr, idx, t_ptr, idx, idx, 2, 0.2, True, True, True)

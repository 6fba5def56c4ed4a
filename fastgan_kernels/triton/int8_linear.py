"""Triton kernels of the int8 path: per-token / per-tensor quantisation and the int8 GEMM.

Quantisation (symmetric, zero point 0)
--------------------------------------
* :func:`quantize_per_token` -- ``scale[m] = max|x[m, :]| / 127`` (``1/127`` for an
  all-zero row, so dequantisation stays exact), ``q = clamp(rint(x / scale), -127, 127)``.
  One program owns ``BLOCK_M`` whole rows. When a row fits one ``BLOCK_K`` tile it is
  loaded once and kept in registers (``ONE_TILE``); otherwise a first sweep over K
  finds the row maximum and a second sweep quantises (the re-read hits L2).
* :func:`quantize_per_tensor` -- the same with a given static scale ``[1]``; a plain
  2-D tiled elementwise kernel.

Both compute in fp32 whatever the input dtype (fp32/fp16/bf16, any strides) and
divide with ``tl.math.div_rn`` (IEEE round-to-nearest, like torch; a plain ``/`` may
lower to an approximate division on GPU), so ``q`` and ``scale`` are bit-identical
to the float reference.

Non-finite input. The int8 range is symmetric, so -128 is never a quantised value
and serves as a NaN marker: NaN quantises to -128 (±Inf saturates to ±127, as the
clamp formula says). A per-token row that holds any NaN or ±Inf gets ``scale = NaN``
and all of its ``q`` = -128; the Python op layer turns a NaN scale into an error, so a
non-finite activation never silently becomes finite numbers. (A row whose maximum is
a subnormal below ``127 * 2**-149`` would underflow to ``scale = 0``, exactly as in
the float reference; such inputs are not meaningful for int8.)

Rounding. Triton has no ``rint`` in every version, so :func:`round_int8_f32` clamps
to [-127, 127] first and then rounds half-to-even with the magic number
``1.5 * 2**23``: for ``|v| <= 2**22`` the sum ``v + 1.5 * 2**23`` lies in
``[2**23, 2**24)`` where the fp32 spacing is exactly 1, so the FPU's own
round-to-nearest-even does the rounding and subtracting the constant back is exact.
(LLVM does not reassociate fp adds without fast-math flags, which Triton never sets.)

GEMM: :func:`int8_linear`
-------------------------
``acc[M, N] = xq[M, K] @ wq[N, K].T`` in int32 with ``tl.dot`` on int8 tiles: int8
tensor cores on GPU (mma/wgmma s8, K-step 32, hence ``BLOCK_K >= 32``); Triton's
interpreter multiplies int8 tiles exactly with an int32 accumulator (triton 3.9,
checked by the tests), so the same code runs there. ``wq`` is read in its plain
[N, K] layout through its strides, which is already the K-major B operand the int8
MMA wants. (Older interpreters that multiply int8 tiles in int8 and wrap are detected
once by :func:`_int8_dot_via_f32`; there, and only there, each K step is an exact
fp32 dot, ``|partial| <= 128 * 128 * BLOCK_K < 2**24``.)

Tiling, grouped program order (``GROUP_M`` tile-rows walked column by column for L2
reuse), int64 offsets and the load masks for ragged M/N/K (masked lanes load 0 and
add nothing) follow ``fused_linear.py``, whose helpers are reused.

Epilogue, on the int32 accumulator, selected by constexpr switches:
``OUT_KIND`` 0 = float (``y = act(acc * x_scale[m] * w_scale[n] + bias[n])`` in fp32,
one rounding to fp32/bf16/fp16 at the store), 1 = int8 requantised
(``round_int8_f32(y / out_scale)``), 2 = int32 (the raw accumulator, no epilogue).
``X_PER_TOKEN`` picks ``x_scale`` [M] (dynamic per token) or [1] (static per
tensor); ``HAS_BIAS`` and ``ACTIVATION`` are handled by ``_activation.py``.

Configs: autotuned on GPU (keyed on the batch bucketed to a power of two, N and K; pruned to
blocks the shape can fill);
one small config under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from . import _resources
from ._activation import check_code, bias_activation_epilogue
from ._common import INTERPRET, device_guard, grouped_tile_ids, tune_key

# The op layer's bound (ops/int8_linear.py): 127 * 127 * K < 2**31 for quantised values in [-127, 127].
# (Only a -128 NaN marker could exceed it, and its row's NaN scale already poisons that output row.)
MAX_K = (2**31 - 1) // (127 * 127)
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_OUT_KIND = {torch.float32: 0, torch.bfloat16: 0, torch.float16: 0, torch.int8: 1, torch.int32: 2}

# (BLOCK_M, BLOCK_N, BLOCK_K, num_stages, num_warps); GROUP_M = 8. int8 tiles are 1 byte
# per element, so BLOCK_K is twice the fp16 one for the same shared-memory bytes.
_GPU_TILES = [
    (128, 256, 128, 3, 8),
    (256, 128, 128, 3, 8),
    (128, 128, 128, 4, 8),
    (128, 128, 64, 4, 4),
    (64, 256, 128, 4, 4),
    (128, 64, 128, 4, 4),
    (64, 128, 128, 4, 4),
    (64, 64, 128, 4, 4),
    (32, 64, 256, 4, 4),
    (64, 32, 128, 5, 2),
    (16, 64, 256, 4, 4),
    (16, 32, 256, 3, 2),
    # (16, 128, 128, s, 4) spilled 4 B with the int32 epilogue on sm_90 at 3 and 4 stages: dropped
]
_MIN_BLOCK = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32}  # tl.dot on int8: K-step 32


def _config(bm, bn, bk, group, stages, warps):
    return triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": group},
                         num_stages=stages, num_warps=warps)


if INTERPRET:  # numpy per program: one small tile that still gives several groups, edges and K steps
    _CONFIGS = [_config(32, 32, 32, 2, 1, 1)]
else:
    _CONFIGS = [_config(bm, bn, bk, 8, s, w) for bm, bn, bk, s, w in _GPU_TILES]


def _prune_configs(configs, named_args, **kwargs):
    """Clamp each block to the smallest power of two covering M/N/K (respecting int8 dot minimums), dedupe,
    keep what fits the device's shared memory (_resources)."""
    args = {**named_args, **kwargs}
    dims = {"BLOCK_M": args["M"], "BLOCK_N": args["N"], "BLOCK_K": args["K"]}
    seen, pruned = set(), []
    for cfg in configs:
        meta = dict(cfg.kwargs)
        for name, n in dims.items():
            meta[name] = min(meta[name], max(_MIN_BLOCK[name], triton.next_power_of_2(int(n))))
        sig = (tuple(sorted(meta.items())), cfg.num_stages, cfg.num_warps)
        if sig not in seen:
            seen.add(sig)
            pruned.append(triton.Config(meta, num_stages=cfg.num_stages, num_warps=cfg.num_warps))

    def stage_bytes(cfg):  # int8 A and B tiles, one byte per element
        return (cfg.kwargs["BLOCK_M"] + cfg.kwargs["BLOCK_N"]) * cfg.kwargs["BLOCK_K"]

    return _resources.keep(pruned, stage_bytes, _resources.smem_limit(args["a_ptr"]),
                           acc_elems=lambda cfg: cfg.kwargs["BLOCK_M"] * cfg.kwargs["BLOCK_N"],
                           acc_budget=_resources.tc_acc_budget(args["a_ptr"], prologue=False, int8=True))


@triton.jit
def round_int8_f32(v):
    """clamp(round_half_even(v), -127, 127) of an fp32 tile, as fp32; NaN -> -128 (the NaN marker)."""
    is_nan = v != v
    v = tl.minimum(tl.maximum(v, -127.0), 127.0)  # first: keeps |v| far below 2**22
    v = (v + 12582912.0) - 12582912.0  # 1.5 * 2**23: the add rounds to an integer, half to even
    return tl.where(is_nan, -128.0, v)


@triton.jit
def _quantize_per_token_kernel(x_ptr, q_ptr, scale_ptr, M, K, stride_xm, stride_xk, stride_qm,
                               BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, ONE_TILE: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.arange(0, BLOCK_K).to(tl.int64)  # int64: k * stride_xk of a transposed view can pass 2**31
    mask_m = offs_m < M
    rows = offs_m.to(tl.int64)
    x_rows = x_ptr + rows[:, None] * stride_xm
    q_rows = q_ptr + rows[:, None] * stride_qm
    if ONE_TILE:  # the whole row block stays in registers
        mask = mask_m[:, None] & (offs_k < K)[None, :]
        x = tl.load(x_rows + offs_k[None, :] * stride_xk, mask=mask, other=0.0).to(tl.float32)
        ax = tl.abs(x)
        finite = ax <= 3.4028234663852886e38  # FLT_MAX: False for NaN and +-Inf
        amax = tl.max(tl.where(finite, ax, 0.0), axis=1)
        bad = tl.max(tl.where(finite, 0, 1), axis=1)
    else:
        amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
        bad = tl.zeros((BLOCK_M,), dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            mask = mask_m[:, None] & (offs_k < K - k0)[None, :]
            ax = tl.abs(tl.load(x_rows + (k0 + offs_k)[None, :] * stride_xk, mask=mask, other=0.0).to(tl.float32))
            finite = ax <= 3.4028234663852886e38
            amax = tl.maximum(amax, tl.max(tl.where(finite, ax, 0.0), axis=1))
            bad = tl.maximum(bad, tl.max(tl.where(finite, 0, 1), axis=1))
    scale = tl.math.div_rn(tl.where(amax == 0.0, 1.0, amax), tl.full((BLOCK_M,), 127.0, tl.float32))
    scale = tl.where(bad != 0, float("nan"), scale)  # a NaN scale makes the whole row -128 below
    tl.store(scale_ptr + offs_m, scale, mask=mask_m)
    scale_tile = tl.broadcast_to(scale[:, None], (BLOCK_M, BLOCK_K))
    if ONE_TILE:
        q = round_int8_f32(tl.math.div_rn(x, scale_tile))
        tl.store(q_rows + offs_k[None, :], q.to(tl.int8), mask=mask)
    else:
        for k0 in range(0, K, BLOCK_K):
            mask = mask_m[:, None] & (offs_k < K - k0)[None, :]
            x = tl.load(x_rows + (k0 + offs_k)[None, :] * stride_xk, mask=mask, other=0.0).to(tl.float32)
            q = round_int8_f32(tl.math.div_rn(x, scale_tile))
            tl.store(q_rows + (k0 + offs_k)[None, :], q.to(tl.int8), mask=mask)


@triton.jit
def _quantize_per_tensor_kernel(x_ptr, q_ptr, scale_ptr, M, K, stride_xm, stride_xk, stride_qm,
                                BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = (tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)).to(tl.int64)
    mask = (offs_m < M)[:, None] & (offs_k < K)[None, :]
    rows = offs_m.to(tl.int64)
    x = tl.load(x_ptr + rows[:, None] * stride_xm + offs_k[None, :] * stride_xk, mask=mask, other=0.0)
    scale = tl.full((BLOCK_M, BLOCK_K), 0.0, tl.float32) + tl.load(scale_ptr)
    q = round_int8_f32(tl.math.div_rn(x.to(tl.float32), scale))
    tl.store(q_ptr + rows[:, None] * stride_qm + offs_k[None, :], q.to(tl.int8), mask=mask)


@triton.jit
def _int8_gemm_kernel(
    a_ptr, b_ptr, x_scale_ptr, w_scale_ptr, bias_ptr, out_scale_ptr, c_ptr,
    M, N, K,
    M_KEY,  # autotune key only: the batch M bucketed (_common.tune_key); unused in the body
    stride_am, stride_ak, stride_bk, stride_bn, stride_xs, stride_ws, stride_bias, stride_cm,
    negative_slope,
    OUT_KIND: tl.constexpr,  # 0 float (c's dtype), 1 int8 requantised with out_scale, 2 int32 raw accumulator
    X_PER_TOKEN: tl.constexpr,  # x_scale is [M] (True) or [1] (False)
    HAS_BIAS: tl.constexpr,
    ACTIVATION: tl.constexpr,
    I8_VIA_F32: tl.constexpr,  # interpreter without an exact int8 dot only (see _int8_dot_via_f32)
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
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        mask_k = offs_k < K - k0
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0)
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0)
        if I8_VIA_F32:
            acc += tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee").to(tl.int32)
        else:
            acc = tl.dot(a, b, acc)  # int8 x int8 -> int32 (tensor cores on GPU)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c_ptrs = c_ptr + rows[:, None] * stride_cm + cols[None, :]
    store_int8_epilogue(acc, c_ptrs, mask_m[:, None] & mask_n[None, :], rows, cols, mask_m, mask_n,
                        x_scale_ptr, stride_xs, w_scale_ptr, stride_ws, bias_ptr, stride_bias, out_scale_ptr,
                        negative_slope, OUT_KIND, X_PER_TOKEN, HAS_BIAS, ACTIVATION, BLOCK_M, BLOCK_N)


@triton.jit
def store_int8_epilogue(acc, c_ptrs, c_mask, rows, cols, mask_m, mask_n, x_scale_ptr, stride_xs, w_scale_ptr,
                        stride_ws, bias_ptr, stride_bias, out_scale_ptr, negative_slope, OUT_KIND: tl.constexpr,
                        X_PER_TOKEN: tl.constexpr, HAS_BIAS: tl.constexpr, ACTIVATION: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """The int8 epilogue on an int32 [BLOCK_M, BLOCK_N] accumulator (module docstring), stored at c_ptrs.

    Shared with the block-sparse int8 kernel (block_sparse_int8_linear.py)."""
    if OUT_KIND == 2:
        tl.store(c_ptrs, acc, mask=c_mask)
    else:
        y = acc.to(tl.float32)
        if X_PER_TOKEN:
            y = y * tl.load(x_scale_ptr + rows * stride_xs, mask=mask_m, other=0.0)[:, None]
        else:
            y = y * tl.load(x_scale_ptr)
        y = y * tl.load(w_scale_ptr + cols * stride_ws, mask=mask_n, other=0.0)[None, :]
        y = bias_activation_epilogue(y, bias_ptr, cols, mask_n, stride_bias, HAS_BIAS, ACTIVATION, negative_slope)
        if OUT_KIND == 1:
            out_scale = tl.full((BLOCK_M, BLOCK_N), 0.0, tl.float32) + tl.load(out_scale_ptr)
            tl.store(c_ptrs, round_int8_f32(tl.math.div_rn(y, out_scale)).to(tl.int8), mask=c_mask)
        else:
            tl.store(c_ptrs, y.to(c_ptrs.dtype.element_ty), mask=c_mask)


_int8_gemm = triton.autotune(configs=_CONFIGS, key=["M_KEY", "N", "K"],
                             prune_configs_by={"early_config_prune": _prune_configs})(_int8_gemm_kernel)


@functools.lru_cache(maxsize=None)
def _int8_dot_via_f32() -> bool:
    """True only under an interpreter whose int8 ``tl.dot`` is not exact (triton 3.9's is); False on GPU."""
    if not INTERPRET:
        return False
    a = torch.full((16, 32), -127, dtype=torch.int8)
    c = torch.empty((16, 16), dtype=torch.int32)
    try:
        _int8_gemm_kernel[(1,)](a, a, a, a, a, a, c, 16, 16, 32, 16, 32, 1, 1, 32, 0, 0, 0, 16, 0.0, OUT_KIND=2,
                                X_PER_TOKEN=False, HAS_BIAS=False, ACTIVATION=0, I8_VIA_F32=False,
                                BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=1)
    except Exception:  # an interpreter without int8 dots at all
        return True
    return not bool((c == 127 * 127 * 32).all())


# Quantiser tiles: at most this many columns per tile (rows longer than this take two sweeps) and
# about _QUANT_TILE elements per program. Module-level so tests can force the two-sweep path.
_QUANT_MAX_BLOCK_K = 4096
_QUANT_TILE = 8192


def _check_float_2d(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"{name} (triton): expected x [M, K], got {getattr(x, 'shape', type(x))}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} (triton): x must be float32/float16/bfloat16, got {x.dtype}")


def _check_scale1(fn: str, name: str, s: Tensor, device: torch.device) -> None:
    if not isinstance(s, Tensor) or s.dtype != torch.float32 or s.numel() != 1 or s.device != device:
        raise ValueError(f"{fn} (triton): {name} must be a float32 tensor of shape [1] on {device}, got "
                         f"{getattr(s, 'dtype', type(s))} {tuple(getattr(s, 'shape', ()))} "
                         f"on {getattr(s, 'device', '?')}")


def quantize_per_token(x: Tensor) -> tuple[Tensor, Tensor]:
    """(q int8 [M, K] contiguous, scale fp32 [M]); a row with NaN/Inf gets scale NaN and q = -128 (module doc)."""
    _check_float_2d("quantize_per_token", x)
    M, K = x.shape
    q = torch.empty((M, K), device=x.device, dtype=torch.int8)
    scale = torch.empty((M,), device=x.device, dtype=torch.float32)
    if M == 0:
        return q, scale
    block_k = min(max(16, triton.next_power_of_2(K)), _QUANT_MAX_BLOCK_K)
    block_m = max(2, min(_QUANT_TILE // block_k, 64, triton.next_power_of_2(M)))
    warps = 1 if INTERPRET else (8 if block_m * block_k >= 4096 else 4)
    with device_guard(x):
        _quantize_per_token_kernel[(triton.cdiv(M, block_m),)](
            x, q, scale, M, K, x.stride(0), x.stride(1), q.stride(0),
            BLOCK_M=block_m, BLOCK_K=block_k, ONE_TILE=K <= block_k, num_warps=warps)
    return q, scale


def quantize_per_tensor(x: Tensor, scale: Tensor) -> Tensor:
    """q = clamp(round_half_even(x / scale), -127, 127) as int8 [M, K] contiguous; NaN -> -128."""
    _check_float_2d("quantize_per_tensor", x)
    _check_scale1("quantize_per_tensor", "scale", scale, x.device)
    M, K = x.shape
    q = torch.empty((M, K), device=x.device, dtype=torch.int8)
    if M == 0 or K == 0:
        return q
    block_k = min(max(16, triton.next_power_of_2(K)), 1024)
    block_m = max(2, min(4096 // block_k, triton.next_power_of_2(M)))
    with device_guard(x):
        _quantize_per_tensor_kernel[(triton.cdiv(M, block_m), triton.cdiv(K, block_k))](
            x, q, scale, M, K, x.stride(0), x.stride(1), q.stride(0),
            BLOCK_M=block_m, BLOCK_K=block_k, num_warps=1 if INTERPRET else 4)
    return q


def int8_linear(xq: Tensor, x_scale: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                out_features: int, activation: int, negative_slope: float, out_dtype: torch.dtype,
                out_scale: Optional[Tensor]) -> Tensor:
    """act(xq @ wq.T * x_scale[m] * w_scale[n] + bias[n]) as a contiguous [M, N] tensor of ``out_dtype``.

    ``xq`` int8 [M, K] and ``wq`` int8 [N, K] (plain layout, any strides); ``x_scale`` fp32 [M] or [1];
    ``w_scale`` fp32 [N]; ``bias`` fp32 [N] or None; ``out_dtype`` float32/bfloat16/float16, int8
    (requantised with ``out_scale`` [1]) or int32 (raw accumulator: scales, bias and act ignored).
    """
    fn = "int8_linear"
    if xq.dim() != 2 or wq.dim() != 2 or xq.shape[1] != wq.shape[1]:
        raise ValueError(f"{fn} (triton): expected xq [M, K] and wq [N, K], got {tuple(xq.shape)} and "
                         f"{tuple(wq.shape)}")
    if xq.dtype != torch.int8 or wq.dtype != torch.int8:
        raise TypeError(f"{fn} (triton): xq and wq must be int8, got {xq.dtype} and {wq.dtype}")
    (M, K), N = xq.shape, wq.shape[0]
    if int(out_features) != N:
        raise ValueError(f"{fn} (triton): out_features={out_features} but wq has {N} rows (the Triton "
                         f"backend takes the plain, unpacked [N, K] weight)")
    if K > MAX_K:
        raise ValueError(f"{fn} (triton): K={K} exceeds {MAX_K}, the int32 accumulator could overflow")
    if out_dtype not in _OUT_KIND:
        raise TypeError(f"{fn} (triton): out_dtype must be one of {list(_OUT_KIND)}, got {out_dtype}")
    check_code(activation, fn)
    kind = _OUT_KIND[out_dtype]
    if kind != 2:
        if x_scale.dtype != torch.float32 or x_scale.dim() != 1 or x_scale.shape[0] not in (1, M):
            raise ValueError(f"{fn} (triton): x_scale must be float32 [{M}] or [1], got {x_scale.dtype} "
                             f"{tuple(x_scale.shape)}")
        if w_scale.dtype != torch.float32 or tuple(w_scale.shape) != (N,):
            raise ValueError(f"{fn} (triton): w_scale must be float32 [{N}], got {w_scale.dtype} "
                             f"{tuple(w_scale.shape)}")
        if bias is not None and (bias.dtype != torch.float32 or tuple(bias.shape) != (N,)):
            raise ValueError(f"{fn} (triton): bias must be float32 [{N}] or None, got {bias.dtype} {tuple(bias.shape)}")
        if kind == 1:
            if out_scale is None:
                raise ValueError(f"{fn} (triton): out_dtype int8 needs out_scale, a float32 tensor of shape [1]")
            _check_scale1(fn, "out_scale", out_scale, xq.device)
    out = torch.empty((M, N), device=xq.device, dtype=out_dtype)
    if M == 0 or N == 0:
        return out
    per_token = kind != 2 and x_scale.shape[0] == M  # M == 1: either reading is the same
    stride_of = lambda t: t.stride(0) if t is not None and t.dim() == 1 else 0  # noqa: E731
    grid = lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)  # noqa: E731
    with device_guard(xq):
        _int8_gemm[grid](
            xq, wq, x_scale, w_scale, xq if bias is None else bias, xq if out_scale is None else out_scale, out,
            M, N, K, tune_key(M),
            xq.stride(0), xq.stride(1), wq.stride(1), wq.stride(0), stride_of(x_scale), stride_of(w_scale),
            stride_of(bias), out.stride(0),
            float(negative_slope),
            OUT_KIND=kind, X_PER_TOKEN=per_token, HAS_BIAS=bias is not None and kind != 2,
            ACTIVATION=int(activation) if kind != 2 else 0, I8_VIA_F32=_int8_dot_via_f32(),
        )
    return out


def aot_launches():
    """(label, thunk) pairs calling this module's launchers on meta tensors, for the ahead-of-time
    compile check (:mod:`fastgan_kernels.aot`): the GEMM's three epilogues (float out with per-token
    scales, requantised int8 out with a static scale, raw int32) and both quantisers' paths."""
    M, N, K = 1024, 4096, 4096
    meta = dict(device="meta")
    xq, wq = torch.empty(M, K, dtype=torch.int8, **meta), torch.empty(N, K, dtype=torch.int8, **meta)
    xs, ws = torch.empty(M, **meta), torch.empty(N, **meta)
    b, one = torch.empty(N, **meta), torch.empty(1, **meta)
    yield "gemm bf16 out", lambda: int8_linear(xq, xs, wq, ws, b, N, 2, 0.2, torch.bfloat16, None)
    yield "gemm int8 out", lambda: int8_linear(xq, one, wq, ws, b, N, 2, 0.2, torch.int8, one)
    yield "gemm int32 out", lambda: int8_linear(xq, one, wq, ws, None, N, 0, 0.0, torch.int32, None)
    for dtype in (torch.float32, torch.bfloat16):
        name = str(dtype).removeprefix("torch.")
        for k in (K, 4 * _QUANT_MAX_BLOCK_K):  # one tile per row / two sweeps
            x = torch.empty(M, k, dtype=dtype, **meta)
            yield f"quantize per token {name} K={k}", lambda x=x: quantize_per_token(x)
        x = torch.empty(M, K, dtype=dtype, **meta)
        yield f"quantize per tensor {name}", lambda x=x: quantize_per_tensor(x, one)

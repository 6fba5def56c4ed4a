"""``fastgan::mlp_chain``: a whole chain of linear layers (a generator) in one op.

``mlp_chain(x, tensors, meta, scalars, schedule) -> y`` runs every layer of a packed chain
description (made once by :mod:`fastgan_kernels.deploy.plan`; its layout is documented in
``csrc/cpu/mlp_chain.cpp``): per layer ``meta`` holds ``[format, N, K, activation code, output
store, 0]``, ``scalars`` ``[negative_slope, input scale, output scale]`` and ``tensors`` four
slots (dense: weight, bias; int8: packed blob, w_scale, bias, int8 weight; block-sparse: values,
row_ptr, col_idx, bias). ``x`` is float32 ``[M, K0]``, ``y`` float32 ``[M, N_last]``.

CPU: one C++ call (``fastgan_ext::mlp_chain``: one parallel region, weights packed once).
Other devices: the per-layer public ops (fused / int8 / block-sparse linear) in a Python loop,
which the deploy package captures in a CUDA graph. Inference only: no autograd formula.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import _ext, activations
from . import _fastpath
from .block_sparse_linear import apply as _block_sparse
from .fused_linear import fused_linear
from .int8_linear import int8_linear, int8_linear_dynamic, quantize_per_tensor

META_PER, SCALARS_PER, TENSORS_PER = 6, 3, 4
# Layer formats and output stores (csrc/cpu/chain/chain.h: chain::Format, chain::Store).
DENSE_F32, DENSE_BF16, INT8_DYNAMIC, INT8_STATIC, BSR_F32 = range(5)
STORE_F32, STORE_BF16, STORE_I8 = range(3)
SCHEDULES = {"auto": 0, "columns": 1, "rows": 2}


def _has_cpu_kernel() -> bool:
    return _ext.has_kernel("mlp_chain", "CPU")


def per_layer(x: Tensor, tensors: list[Tensor], meta: list[int], scalars: list[float]) -> Tensor:
    """The chain as one public op per layer (any device; the GPU path and a test oracle)."""
    h = x
    for i in range(len(meta) // META_PER):
        fmt, n, _, act, store, _ = meta[i * META_PER:(i + 1) * META_PER]
        slope, in_scale, out_scale = scalars[i * SCALARS_PER:(i + 1) * SCALARS_PER]
        t = tensors[i * TENSORS_PER:(i + 1) * TENSORS_PER]
        name = activations.name(act)
        out_dtype = {STORE_F32: torch.float32, STORE_BF16: torch.bfloat16, STORE_I8: torch.int8}[store]
        if fmt in (DENSE_F32, DENSE_BF16):
            bias = t[1] if t[1].numel() else None
            w = t[0]
            y = fused_linear(h.to(w.dtype), w, None if bias is None else bias.to(w.dtype), name, slope)
            h = y.to(out_dtype)
        elif fmt in (INT8_DYNAMIC, INT8_STATIC):
            bias = t[2] if t[2].numel() else None
            o_scale = torch.tensor([out_scale], device=h.device) if store == STORE_I8 else None
            o_dtype = torch.int8 if store == STORE_I8 else torch.float32
            if h.dtype != torch.int8 and fmt == INT8_DYNAMIC:
                h = int8_linear_dynamic(h.float(), t[3], t[1], bias, name, slope, o_dtype, o_scale)
            else:
                xs = torch.tensor([in_scale], device=h.device)
                xq = h if h.dtype == torch.int8 else quantize_per_tensor(h.float(), xs)
                h = int8_linear(xq, xs, t[3], t[1], bias, name, slope, o_dtype, o_scale)
            h = h if h.dtype == torch.int8 else h.to(out_dtype)
        elif fmt == BSR_F32:
            bias = t[3] if t[3].numel() else None
            h = _block_sparse(h.float(), t[0], t[1], t[2], bias, n, name, slope, "auto").to(out_dtype)
        else:
            raise ValueError(f"mlp_chain: unknown layer format {fmt} (layer {i})")
    return h.float()


def _forward(x: Tensor, tensors: list[Tensor], meta: list[int], scalars: list[float], schedule: int) -> Tensor:
    if x.device.type == "cpu" and _has_cpu_kernel():
        return torch.ops.fastgan_ext.mlp_chain.default(x, tensors, meta, scalars, schedule)
    return per_layer(x, tensors, meta, scalars)


@torch.library.custom_op("fastgan::mlp_chain", mutates_args=())
def _mlp_chain_op(x: Tensor, tensors: list[Tensor], meta: list[int], scalars: list[float], schedule: int) -> Tensor:
    return _forward(x, tensors, meta, scalars, schedule)


@_mlp_chain_op.register_fake
def _(x, tensors, meta, scalars, schedule):
    return x.new_empty((x.shape[0], meta[-META_PER + 1]), dtype=torch.float32)


def mlp_chain(x: Tensor, tensors: list[Tensor], meta: list[int], scalars: list[float], schedule: int = 0,
              out: Optional[Tensor] = None) -> Tensor:
    """Run a packed chain on ``x [M, K0]`` (float32); ``out`` (float32 ``[M, N_last]``) is written in place.

    Plain eager CPU calls go straight to the kernel (ops/_fastpath.py); under torch.compile /
    export (or with a dispatch mode) the custom op is used, so the chain is one op in the graph.
    """
    if x.device.type == "cpu" and _fastpath.eligible(x) and _has_cpu_kernel():
        if out is None:
            return torch.ops.fastgan_ext.mlp_chain.default(x, tensors, meta, scalars, schedule)
        torch.ops.fastgan_ext.mlp_chain_out.default(x, tensors, meta, scalars, schedule, out)
        return out
    y = _mlp_chain_op(x, tensors, meta, scalars, schedule)
    if out is None:
        return y
    return out.copy_(y)


def chain_schedule(tensors: list[Tensor], meta: list[int], scalars: list[float], batch: int, schedule: int = 0) -> str:
    """The CPU schedule ("columns" or "rows") a batch of ``batch`` rows takes on this thread count."""
    return torch.ops.fastgan_ext.mlp_chain_schedule(tensors, meta, scalars, batch, schedule)

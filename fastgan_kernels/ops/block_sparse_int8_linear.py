"""``fastgan::block_sparse_int8_linear``: the int8 linear with its weight pruned in blocks.

The weight is a :class:`~fastgan_kernels.ops.bsr.BsrWeight` whose ``values`` are int8 (the same
block sizes and index layout as the fp32 BSR), with per-output-channel scales ``w_scale [N]``
(:func:`quantize_bsr_weight`). The computation is :mod:`fastgan_kernels.ops.int8_linear`'s,
``y = act(acc * x_scale[m] * w_scale[n] + bias[n])`` written as float or requantised int8, with
``acc = xq @ W.T`` in int32 over the kept blocks only (pruned blocks are never read). The
activation ``x`` is

* int8, with ``x_scale`` ``[M]`` (per token) or ``[1]`` (per tensor): a previous int8 layer's
  requantised output;
* float with ``x_scale`` ``[1]``: static, quantised per tensor with the calibrated scale;
* float with ``x_scale=None``: dynamic, quantised per token (on the CPU while the kernel packs x,
  bit for bit ``quantize_per_token``).

No autograd (an inference op, like int8_linear). A NaN / Inf in a float x raises a ValueError as in
the int8 op. ``w_packed`` is the backend's packed weight (:func:`pack_weight`), made once by the
module; backends that read ``values`` directly ignore it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import activations, backends
from . import _fastpath, _validate, bsr
from . import int8_linear as q8
from ._int8_reference import reference_int8_linear

OP = "block_sparse_int8_linear"
_EXT_FWD = "bsr_int8_linear_fwd"
_ACT_CODES = {name: code for code, name in enumerate(activations.NAMES)}


def _triton():
    from ..triton import block_sparse_int8_linear as kernels  # lazily: triton is optional

    return kernels


def _ext():
    return torch.ops.fastgan_ext


def quantize_bsr_weight(weight: bsr.BsrWeight) -> tuple[bsr.BsrWeight, Tensor]:
    """A float BsrWeight -> (the same structure with int8 values, w_scale fp32 [N]).

    Symmetric per output channel over the row's kept blocks (pruned blocks are zero, so this is
    ``quantize_weight`` of the pruned dense weight, restricted to the kept blocks).
    """
    if not isinstance(weight, bsr.BsrWeight):
        raise TypeError(f"quantize_bsr_weight: weight must be a BsrWeight, got {type(weight).__name__}")
    wq, w_scale = q8.quantize_weight(weight.to_dense().float(), "reference")
    mask = weight.block_mask()
    return bsr.BsrWeight.from_dense(wq, weight.block, mask), w_scale


def pack_weight(weight: bsr.BsrWeight, backend: str = "auto") -> Optional[Tensor]:
    """The packed weight the chosen backend wants (None where it reads ``values`` as is)."""
    chosen = backends.resolve(backend, weight.values.device, "bsr_int8_pack_weight")
    if chosen not in ("cpu_ext", "cuda_ext"):
        return None
    return _ext().bsr_int8_pack_weight(weight.values, weight.row_ptr, weight.col_idx, *weight.shape)


# --- the computation ------------------------------------------------------------------------------
def _reference_int8(xq, x_scale, values, row_ptr, col_idx, w_scale, bias, n, act, slope, out_dtype, out_scale):
    wq = bsr.to_dense(values, row_ptr, col_idx, (n, xq.shape[-1]))
    return reference_int8_linear(xq, x_scale, wq, w_scale, bias, act, slope, out_dtype, out_scale)


def _int8_x(xq, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, n, act, slope, out_dtype, out_scale,
            chosen):
    if chosen in ("cpu_ext", "cuda_ext"):
        packed = w_packed if w_packed is not None else _ext().bsr_int8_pack_weight(values, row_ptr, col_idx, n,
                                                                                    xq.shape[1])
        return _ext().bsr_int8_linear_fwd(xq, x_scale, packed, row_ptr, col_idx, w_scale, bias, n, act, slope,
                                          out_dtype, out_scale)
    if chosen == "triton":
        return _triton().bsr_int8_linear(xq, x_scale, values, row_ptr, col_idx, w_scale, bias, n, act, slope,
                                         out_dtype, out_scale)
    return _reference_int8(xq, x_scale, values, row_ptr, col_idx, w_scale, bias, n, act, slope, out_dtype,
                           out_scale)


def _kernels(x, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, n, act: int, slope, out_dtype, out_scale,
             backend: str, check_finite: bool) -> Tensor:
    """The op's computation for canonical arguments (act code, x_scale 1-D or None)."""
    chosen = backends.resolve(backend, x.device, _EXT_FWD)
    k = x.shape[-1]
    x2 = x if x.dim() == 2 else x.reshape(-1, k)
    if x2.shape[0] == 0:
        return x.new_empty((*x.shape[:-1], n), dtype=out_dtype)
    if x2.dtype != torch.int8 and x_scale is None and chosen == "cpu_ext":  # dynamic, one kernel
        packed = w_packed if w_packed is not None else _ext().bsr_int8_pack_weight(values, row_ptr, col_idx, n, k)
        y = _ext().bsr_int8_linear_dynamic_fwd(x2, packed, row_ptr, col_idx, w_scale, bias, n, act, slope, out_dtype,
                                               out_scale)
    else:
        if x2.dtype == torch.int8:
            xq, xs = x2, x_scale
        elif x_scale is None:  # dynamic, two steps: the backend's per-token quantiser
            xq, xs = q8.run_quantize_per_token(x2, chosen, check_finite)
        else:  # static
            xq, xs = q8.run_quantize_per_tensor(x2, x_scale, chosen, check_finite), x_scale
        y = _int8_x(xq, xs, values, row_ptr, col_idx, w_scale, bias, w_packed, n, act, slope, out_dtype, out_scale,
                    chosen)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], n)


@torch.library.custom_op("fastgan::block_sparse_int8_linear", mutates_args=())
def _block_sparse_int8_linear_op(x: Tensor, x_scale: Optional[Tensor], values: Tensor, row_ptr: Tensor,
                                 col_idx: Tensor, w_scale: Tensor, bias: Optional[Tensor], w_packed: Optional[Tensor],
                                 out_features: int, activation: str, negative_slope: float, out_dtype: torch.dtype,
                                 out_scale: Optional[Tensor], backend: str, check_finite: bool) -> Tensor:
    return _kernels(x, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, out_features,
                    _ACT_CODES[activation], negative_slope, out_dtype, out_scale, backend, check_finite)


@_block_sparse_int8_linear_op.register_fake
def _(x, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, out_features, activation, negative_slope,
      out_dtype, out_scale, backend, check_finite):
    return x.new_empty((*x.shape[:-1], out_features), dtype=out_dtype)


def run_block_sparse_int8_linear(x: Tensor, x_scale: Optional[Tensor], values: Tensor, row_ptr: Tensor,
                                 col_idx: Tensor, w_scale: Tensor, bias: Optional[Tensor], w_packed: Optional[Tensor],
                                 out_features: int, activation: str, negative_slope: float, out_dtype: torch.dtype,
                                 out_scale: Optional[Tensor], backend: str, check_finite: bool = True) -> Tensor:
    """The op without the argument checks (canonical arguments; e.g. BlockSparseInt8Linear)."""
    if _fastpath.eligible(x, x_scale, values, w_scale, bias, w_packed, out_scale):
        return _kernels(x, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, out_features,
                        _ACT_CODES[activation], negative_slope, out_dtype, out_scale, backend, check_finite)
    return _block_sparse_int8_linear_op(x, x_scale, values, row_ptr, col_idx, w_scale, bias, w_packed, out_features,
                                        activation, negative_slope, out_dtype, out_scale, backend, check_finite)


# --- the public entry point -----------------------------------------------------------------------
def check_args(x: Tensor, x_scale: Optional[Tensor], weight: bsr.BsrWeight, w_scale: Tensor,
               bias: Optional[Tensor], activation, negative_slope, out_dtype, out_scale):
    """Everything but the index contents; returns (activation name, x_scale 1-D or None, out_scale)."""
    if not isinstance(weight, bsr.BsrWeight):
        raise TypeError(f"{OP}: weight must be a BsrWeight (quantize_bsr_weight), got {type(weight).__name__}")
    _validate.check_tensor(x, f"{OP}: x")
    _validate.check_tensor(weight.values, f"{OP}: weight.values")
    if weight.values.dtype != torch.int8:
        raise TypeError(f"{OP}: weight.values must be int8 (quantize_bsr_weight), got {weight.values.dtype}")
    if weight.values.device != x.device:
        raise ValueError(f"{OP}: weight must be on x's device {x.device}, got {weight.values.device}")
    n, k = weight.shape
    bsr.check_layout(weight.values, weight.row_ptr, weight.col_idx, (n, k), OP)
    m = _validate.check_input(x, k, OP)
    if x.dtype == torch.int8:
        if x_scale is None:
            raise ValueError(f"{OP}: an int8 x needs its x_scale ([M] per token or [1] per tensor)")
        q8._check_scale(x_scale, "x_scale", (m, 1), x.device, OP)
    else:
        _validate.check_float(x, f"{OP}: x")
        if x_scale is not None:  # static: one calibrated scale for the tensor
            q8._check_scale(x_scale, "x_scale", (1,), x.device, OP)
    act, out_scale = q8.check_epilogue(OP, x.device, (n, k), w_scale, bias, activation, negative_slope, out_dtype,
                                       out_scale)
    return act, None if x_scale is None else x_scale.reshape(-1), out_scale


def block_sparse_int8_linear(x: Tensor, weight: bsr.BsrWeight, w_scale: Tensor, bias: Optional[Tensor] = None,
                             x_scale: Optional[Tensor] = None, activation: str = "identity",
                             negative_slope: float = 0.2, out_dtype: torch.dtype = torch.float32,
                             out_scale: Optional[Tensor] = None, w_packed: Optional[Tensor] = None,
                             backend: str = "auto", check_indices: bool = True, check_finite: bool = True) -> Tensor:
    """``act((xq @ W.T) * x_scale * w_scale + bias)`` with ``W`` int8 in BSR blocks (int32 accumulator).

    Args:
        x: int8 ``[..., K]`` with ``x_scale`` ``[M]`` / ``[1]``, or float: static with ``x_scale`` ``[1]``,
            dynamic (per token) with ``x_scale=None``.
        weight: a BsrWeight with int8 values; ``w_scale`` fp32 ``[N]``; bias fp32 ``[N]`` or None.
        out_dtype: float32 / bfloat16 / float16, int8 (requantised with ``out_scale`` [1]) or int32 (the
            raw accumulator: no bias or activation).
        w_packed: ``pack_weight(weight)``, to skip packing on every call.
        check_indices: re-validate the index contents (one small read; modules validate once).
    """
    act, x_scale, out_scale = check_args(x, x_scale, weight, w_scale, bias, activation, negative_slope, out_dtype,
                                         out_scale)
    if check_indices and not torch.compiler.is_compiling():
        bsr.check_indices(weight.values, weight.row_ptr, weight.col_idx, weight.shape, OP)
    backends.check_backend(backend)
    return run_block_sparse_int8_linear(x, x_scale, weight.values, weight.row_ptr, weight.col_idx, w_scale, bias,
                                        w_packed, weight.shape[0], act, float(negative_slope), out_dtype, out_scale,
                                        backend, check_finite)


__all__ = ["block_sparse_int8_linear", "quantize_bsr_weight", "pack_weight", "run_block_sparse_int8_linear"]

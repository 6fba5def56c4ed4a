"""``fastgan::block_sparse_linear``: act(x @ W.T + bias) with W stored as BSR blocks.

Only the kept blocks are read. The autograd formula returns gradients for x, for the
kept blocks only (``values``: pruned blocks do not exist, so they stay zero while a
model is fine-tuned) and for bias. As with fused_linear, the backward reads the saved
output and applies act'(y) in the gradient kernels' prologue; for gelu, gelu_tanh and
silu (not functions of y) it recomputes the pre-activation z with the forward kernel
and the identity epilogue, and the prologue applies act'(z).

The BSR layout is described in :mod:`fastgan_kernels.ops.bsr`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .. import activations, backends
from . import _autocast, _fastpath, _validate, bsr, reference

_EXT_FWD = "bsr_linear_fwd"
_EXT_BWD = "bsr_linear_bwd"


def _triton():
    from ..triton import block_sparse_linear as kernels  # lazily: triton is optional

    return kernels


def _reference_forward(x, values, row_ptr, col_idx, bias, n, act, slope):
    weight = bsr.to_dense(values, row_ptr, col_idx, (n, x.shape[-1]))
    return reference.fused_linear(x, weight, bias, act, slope)


def _reference_backward(grad, y, x, values, row_ptr, col_idx, act, slope, need_x, need_v, need_b):
    n, k = grad.shape[-1], x.shape[-1]
    weight = bsr.to_dense(values, row_ptr, col_idx, (n, k))
    gx, gw, gb = reference.fused_linear_backward(grad, y, x, weight, act, slope, need_x, need_v, need_b)
    if need_v:  # gather the kept blocks of the dense gradient
        _, bn, bk = values.shape
        nbr, nbc = bsr.grid((n, k), (bn, bk))
        blocks = torch.nn.functional.pad(gw, (0, nbc * bk - k, 0, nbr * bn - n)).view(nbr, bn, nbc, bk)
        gw = blocks.transpose(1, 2)[bsr.block_rows(row_ptr, col_idx.shape[0]).long(), col_idx.long()].contiguous()
    return gx, gw, gb


def forward(x: Tensor, values: Tensor, row_ptr: Tensor, col_idx: Tensor, bias: Optional[Tensor],
            out_features: int, activation: str, negative_slope: float, backend: str) -> Tensor:
    """The op's computation; through the custom op, or directly on the eager fast path (see ``apply``)."""
    act = int(activations.check_activation(activation, negative_slope))
    chosen = backends.resolve(backend, x.device, _EXT_FWD)
    k = x.shape[-1]
    x2 = x.reshape(-1, k)
    if chosen in ("cpu_ext", "cuda_ext"):
        y = torch.ops.fastgan_ext.bsr_linear_fwd(x2, values, row_ptr, col_idx, bias, out_features, act,
                                                 negative_slope)
    elif chosen == "triton":
        y = _triton().bsr_linear_forward(x2, values, row_ptr, col_idx, bias, out_features, act, negative_slope)
    else:
        y = _reference_forward(x2, values, row_ptr, col_idx, bias, out_features, act, negative_slope)
    return y.reshape(*x.shape[:-1], out_features)


@torch.library.custom_op("fastgan::block_sparse_linear", mutates_args=())
def _block_sparse_linear_op(x: Tensor, values: Tensor, row_ptr: Tensor, col_idx: Tensor, bias: Optional[Tensor],
                            out_features: int, activation: str, negative_slope: float, backend: str) -> Tensor:
    return forward(x, values, row_ptr, col_idx, bias, out_features, activation, negative_slope, backend)


def apply(x: Tensor, values: Tensor, row_ptr: Tensor, col_idx: Tensor, bias: Optional[Tensor], out_features: int,
          activation: str, negative_slope: float, backend: str) -> Tensor:
    """The custom op, or the kernel directly when nothing needs the op's machinery (ops/_fastpath.py)."""
    if _validate.is_empty(x):  # zero rows: no kernel; plain PyTorch gives the empty output and its gradients
        return _reference_forward(x, values, row_ptr, col_idx, bias, out_features,
                                  int(activations.check_activation(activation, negative_slope)), negative_slope)
    run = forward if _fastpath.eligible(x, values, bias) else _block_sparse_linear_op
    return run(x, values, row_ptr, col_idx, bias, out_features, activation, negative_slope, backend)


@_block_sparse_linear_op.register_fake
def _(x, values, row_ptr, col_idx, bias, out_features, activation, negative_slope, backend):
    # Validation happens in block_sparse_linear() with concrete sizes; here sizes may be symbolic.
    return x.new_empty((*x.shape[:-1], out_features))


@torch.library.custom_op("fastgan::block_sparse_linear_backward", mutates_args=())
def _block_sparse_linear_backward_op(grad_out: Tensor, y: Optional[Tensor], x: Tensor, values: Tensor,
                                     row_ptr: Tensor, col_idx: Tensor, activation: str, negative_slope: float,
                                     backend: str, need_x: bool, need_values: bool,
                                     need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    act = int(activations.check_activation(activation, negative_slope))
    chosen = backends.resolve(backend, x.device, _EXT_BWD)
    n, k = grad_out.shape[-1], x.shape[-1]
    g2, x2 = grad_out.reshape(-1, n), x.reshape(-1, k)
    y2 = None if act == activations.Activation.IDENTITY else y.reshape(-1, n)
    if chosen == "reference":
        gx, gv, gb = _reference_backward(g2, y2, x2, values, row_ptr, col_idx, act, negative_slope,
                                         need_x, need_values, need_bias)
    else:
        t_index = bsr.transpose_index(row_ptr, col_idx, bsr.grid((n, k), tuple(values.shape[1:]))[1])
        if chosen == "triton":
            gx, gv, gb = _triton().bsr_linear_backward(g2, y2, x2, values, row_ptr, col_idx, *t_index, act,
                                                       negative_slope, need_x, need_values, need_bias)
        else:
            gx, gv, gb = torch.ops.fastgan_ext.bsr_linear_bwd(g2, g2 if y2 is None else y2, x2, values, row_ptr,
                                                              col_idx, *t_index, act, negative_slope, need_x,
                                                              need_values, need_bias)
    return (gx.reshape(x.shape) if need_x else x.new_empty(0),
            gv if need_values else values.new_empty(0),
            gb if need_bias else values.new_empty(0))


@_block_sparse_linear_backward_op.register_fake
def _(grad_out, y, x, values, row_ptr, col_idx, activation, negative_slope, backend, need_x, need_values, need_bias):
    return (x.new_empty(x.shape) if need_x else x.new_empty(0),
            values.new_empty(values.shape) if need_values else values.new_empty(0),
            values.new_empty((grad_out.shape[-1],)) if need_bias else values.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, values, row_ptr, col_idx, bias, out_features, activation, negative_slope, backend = inputs
    act = activations.check_activation(activation, negative_slope)
    ctx.recompute_z = activations.saves_preactivation(act)  # act'(.) needs z: recompute it in backward
    saved_y = None if act == activations.Activation.IDENTITY or ctx.recompute_z else output
    ctx.save_for_backward(x, values, row_ptr, col_idx, saved_y, bias if ctx.recompute_z else None)
    ctx.has_bias = bias is not None
    ctx.out_features = out_features
    ctx.args = (activation, negative_slope, backend)


def _backward(ctx, grad):
    x, values, row_ptr, col_idx, y, bias = ctx.saved_tensors
    need_x, need_v = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    need_b = ctx.needs_input_grad[4] and ctx.has_bias
    grads = [None] * 9
    if need_x or need_v or need_b:
        if ctx.recompute_z:  # y := z, what the prologue of gelu / silu reads
            y = torch.ops.fastgan.block_sparse_linear(x, values, row_ptr, col_idx, bias, ctx.out_features, "identity",
                                                      0.0, ctx.args[2])
        gx, gv, gb = torch.ops.fastgan.block_sparse_linear_backward(grad, y, x, values, row_ptr, col_idx, *ctx.args,
                                                                    need_x, need_v, need_b)
        grads[0], grads[1], grads[4] = (gx if need_x else None, gv if need_v else None, gb if need_b else None)
    return tuple(grads)


_block_sparse_linear_op.register_autograd(_backward, setup_context=_setup_context)


def check_args(x, values, row_ptr, col_idx, bias, out_features) -> None:
    """Checks that need no data: shapes, dtypes, devices and block sizes."""
    op = "block_sparse_linear"
    _validate.check_tensor(x, f"{op}: x")
    _validate.check_tensor(values, f"{op}: values")
    if not isinstance(out_features, int) or isinstance(out_features, bool) or out_features <= 0:
        raise ValueError(f"{op}: out_features must be a positive int, got {out_features!r}")
    _validate.check_float(x, f"{op}: x")
    _validate.check_same(values, x, f"{op}: values", "x")
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"{op}: x must be [..., in_features] with in_features > 0, got shape {tuple(x.shape)}")
    bsr.check_layout(values, row_ptr, col_idx, (out_features, x.shape[-1]), op)
    _validate.check_input(x, x.shape[-1], op)
    _validate.check_bias(bias, x, out_features, op)


def block_sparse_linear(x: Tensor, weight: "bsr.BsrWeight", bias: Optional[Tensor] = None,
                        activation: str = "leaky_relu", negative_slope: Optional[float] = None,
                        backend: str = "auto", check_indices: bool = True, *, alpha: Optional[float] = None) -> Tensor:
    """``act(x @ W.T + bias)`` with ``W`` a :class:`~fastgan_kernels.ops.bsr.BsrWeight`.

    ``check_indices`` re-validates the index contents (one small device-to-host read); the
    modules validate once at conversion and pass False. ``negative_slope`` is LeakyReLU's
    slope (default 0.2), ``alpha`` ELU's (default 1.0), as in fused_linear. Under ``torch.autocast`` x, the
    values and the bias are cast to the autocast dtype first, as for ``F.linear``.
    """
    if not isinstance(weight, bsr.BsrWeight):
        raise TypeError(f"block_sparse_linear: weight must be a BsrWeight, got {type(weight).__name__}")
    n, k = weight.shape
    _validate.check_tensor(x, "block_sparse_linear: x")
    x, values, bias = _autocast.cast(x, weight.values, bias)
    _validate.check_input(x, k, "block_sparse_linear")
    check_args(x, values, weight.row_ptr, weight.col_idx, bias, n)
    if check_indices and not torch.compiler.is_compiling():
        bsr.check_indices(values, weight.row_ptr, weight.col_idx, weight.shape, "block_sparse_linear")
    negative_slope = activations.resolve_param(activation, negative_slope, alpha) if (
        alpha is not None or negative_slope is None) else negative_slope
    act = activations.check_activation(activation, negative_slope)
    backends.check_backend(backend)
    return apply(x, values, weight.row_ptr, weight.col_idx, bias, n, activations.name(act), float(negative_slope),
                 backend)

"""``fastgan::fused_linear``: act(x @ weight.T + bias) in one kernel, with autograd.

The op is a ``torch.library`` custom op with a fake kernel, so ``torch.compile``
(fullgraph) and ``torch.export`` trace through it, and an autograd formula whose
backward is another custom op, ``fastgan::fused_linear_backward``. The backward
reads the saved *output* y and forms ``grad_out * act'(y)`` while the gradient
GEMMs load ``grad_out`` (their prologue): no separate elementwise pass runs. gelu,
gelu_tanh and silu are not functions of their output: for them the backward reads the
pre-activation z instead (activations.saves_preactivation). The eager training paths
keep z (the forward kernel runs with the identity epilogue and the activation is one
elementwise pass over z); the custom op, which has one output, recomputes z in its
backward. docs/design.md ("Activations whose backward needs z") has the measurements.

Backends (``backend=``): ``cpu_ext`` (C++ AVX-512 / AMX), ``triton``, ``cuda_ext``
(CUDA C++), ``reference`` (PyTorch); ``auto`` picks by device (fastgan_kernels.backends).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from .. import activations, backends
from . import _autocast, _fastpath, _validate, reference

_EXT_FWD = "fused_linear_fwd"
_EXT_BWD = "fused_linear_bwd"


def _triton():
    from ..triton import fused_linear as kernels  # imported lazily: triton is optional

    return kernels


def _forward_2d(backend: str, x: Tensor, weight: Tensor, bias: Optional[Tensor], act: int, slope: float) -> Tensor:
    if backend in ("cpu_ext", "cuda_ext"):
        return torch.ops.fastgan_ext.fused_linear_fwd(x, weight, bias, act, slope)
    if backend == "triton":
        return _triton().fused_linear_forward(x, weight, bias, act, slope)
    return reference.fused_linear(x, weight, bias, act, slope)


def _backward_2d(backend: str, grad: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor, act: int,
                 slope: float, need_x: bool, need_w: bool, need_b: bool):
    if backend in ("cpu_ext", "cuda_ext"):
        if y is None:  # identity: the kernels ignore y
            y = grad
        return torch.ops.fastgan_ext.fused_linear_bwd(grad, y, x, weight, act, slope, need_x, need_w, need_b)
    if backend == "triton":
        return _triton().fused_linear_backward(grad, y, x, weight, act, slope, need_x, need_w, need_b)
    return reference.fused_linear_backward(grad, y, x, weight, act, slope, need_x, need_w, need_b)


def _forward_nd(chosen: str, x: Tensor, weight: Tensor, bias: Optional[Tensor], act: int, slope: float) -> Tensor:
    if x.dim() == 2:  # (reshapes cost ~1 us each: noticeable on a small layer)
        return _forward_2d(chosen, x, weight, bias, act, slope)
    n, k = weight.shape
    return _forward_2d(chosen, x.reshape(-1, k), weight, bias, act, slope).reshape(*x.shape[:-1], n)


def _forward(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str, negative_slope: float,
             backend: str) -> Tensor:
    code, _, slope, chosen = _plan(activation, negative_slope, backend, x.device)
    return _forward_nd(chosen, x, weight, bias, code, slope)


@torch.library.custom_op("fastgan::fused_linear", mutates_args=())
def _fused_linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str,
                     negative_slope: float, backend: str) -> Tensor:
    return _forward(x, weight, bias, activation, negative_slope, backend)


@_fused_linear_op.register_fake
def _(x, weight, bias, activation, negative_slope, backend):
    _validate.check_linear(x, weight, bias, "fused_linear")
    activations.check_activation(activation, negative_slope)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _backward_impl(grad_out: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor, activation: str,
                   negative_slope: float, backend: str, need_x: bool, need_weight: bool, need_bias: bool):
    """(grad_x, grad_weight, grad_bias) with None where not needed."""
    act = activations.check_activation(activation, negative_slope)
    chosen = backends.resolve(backend, x.device, _EXT_BWD)
    n, k = weight.shape
    # y: what the backward reads (the output, or z for gelu / silu: activations.saves_preactivation)
    y2 = None if act == activations.Activation.IDENTITY else y.reshape(-1, n)
    gx, gw, gb = _backward_2d(chosen, grad_out.reshape(-1, n), y2, x.reshape(-1, k), weight, int(act),
                              float(negative_slope), need_x, need_weight, need_bias)
    return (gx.reshape(x.shape) if need_x else None, gw if need_weight else None, gb if need_bias else None)


@torch.library.custom_op("fastgan::fused_linear_backward", mutates_args=())
def _fused_linear_backward_op(grad_out: Tensor, y: Optional[Tensor], x: Tensor, weight: Tensor, activation: str,
                              negative_slope: float, backend: str, need_x: bool, need_weight: bool,
                              need_bias: bool) -> tuple[Tensor, Tensor, Tensor]:
    gx, gw, gb = _backward_impl(grad_out, y, x, weight, activation, negative_slope, backend, need_x, need_weight,
                                need_bias)
    # A custom op cannot return None: grads nobody asked for come back empty.
    empty = weight.new_empty(0)
    return (x.new_empty(0) if gx is None else gx, empty if gw is None else gw, empty if gb is None else gb)


@_fused_linear_backward_op.register_fake
def _(grad_out, y, x, weight, activation, negative_slope, backend, need_x, need_weight, need_bias):
    n = weight.shape[0]
    return (x.new_empty(x.shape) if need_x else x.new_empty(0),
            weight.new_empty(weight.shape) if need_weight else weight.new_empty(0),
            weight.new_empty((n,)) if need_bias else weight.new_empty(0))


def _save(ctx, x, weight, bias, saved, recompute_z: bool, args) -> None:
    """Keep what the backward reads: ``saved`` (y, or z for gelu/silu; None for identity), or,
    with ``recompute_z``, the bias so that the backward can recompute z = x @ W.T + b."""
    ctx.save_for_backward(x, weight, saved, bias if recompute_z else None)
    ctx.recompute_z = recompute_z
    ctx.has_bias = bias is not None
    ctx.args = args


def _setup_context(ctx, inputs, output):
    x, weight, bias, activation, negative_slope, backend = inputs
    act = activations.check_activation(activation, negative_slope)
    # act'(.) needs y (or nothing, for identity); gelu / silu need z, which the op's single
    # output does not hold: its backward recomputes z.
    recompute = activations.saves_preactivation(act)
    saved = None if act == activations.Activation.IDENTITY or recompute else output
    _save(ctx, x, weight, bias, saved, recompute, (activation, negative_slope, backend))


def _forward_saving_z(x, weight, bias, activation, negative_slope, backend) -> tuple[Tensor, Tensor]:
    """(y, z) for an activation whose backward reads z: the kernel with the identity epilogue
    gives z (bias fused), then one elementwise pass gives y."""
    z = _forward(x, weight, bias, "identity", 0.0, backend)
    return activations.apply(z, activation, negative_slope), z


def _grads(ctx, grad, backward_fn):
    x, weight, saved, bias = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_b = need_b and ctx.has_bias
    if not (need_x or need_w or need_b):
        return None, None, None, None, None, None
    if ctx.recompute_z:  # through the op (it has a fake kernel), so that compiled backwards trace it too
        saved = torch.ops.fastgan.fused_linear(x, weight, bias, "identity", 0.0, ctx.args[2])
    gx, gw, gb = backward_fn(grad, saved, x, weight, *ctx.args, need_x, need_w, need_b)
    return (gx if need_x else None, gw if need_w else None, gb if need_b else None, None, None, None)


def _backward(ctx, grad):
    return _grads(ctx, grad, torch.ops.fastgan.fused_linear_backward)


class _EagerAutograd(torch.autograd.Function):
    """The op's autograd formula around direct kernel calls, for eager training (ops/_fastpath.py)
    with the Triton or reference backend (the extension backends have the same node in C++).

    Written in the combined ``forward(ctx, ...)`` style on purpose: a Function with a separate
    ``setup_context`` goes through functorch's machinery on every call, ~25 us more per layer on
    this CPU (torch 2.13), which is most of a batch-64 GAN layer's forward.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, activation, negative_slope, backend):
        if activations.saves_preactivation(activation):
            y, z = _forward_saving_z(x, weight, bias, activation, negative_slope, backend)
            _save(ctx, x, weight, bias, z, False, (activation, negative_slope, backend))
            return y
        y = _forward(x, weight, bias, activation, negative_slope, backend)
        _setup_context(ctx, (x, weight, bias, activation, negative_slope, backend), y)
        return y

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph=True: the backward kernels have no derivative
            raise RuntimeError("fused_linear: double backward (create_graph=True) is not supported; use F.linear "
                               "and the activation where a second derivative is needed (e.g. a gradient penalty)")
        return _grads(ctx, grad, _backward_impl)


_fused_linear_op.register_autograd(_backward, setup_context=_setup_context)


def fused_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, activation: str = "leaky_relu",
                 negative_slope: Optional[float] = None, backend: str = "auto", *,
                 alpha: Optional[float] = None) -> Tensor:
    """``act(x @ weight.T + bias)`` in one fused kernel.

    Args:
        x: input ``[..., in_features]`` (float32, float16 or bfloat16; any strides).
        weight: ``[out_features, in_features]``, same dtype and device as ``x``.
        bias: ``[out_features]`` or None.
        activation: one of activations.NAMES: "identity", "relu", "leaky_relu", "tanh", "sigmoid",
            "gelu", "gelu_tanh", "silu", "elu" (aliases "gelu_new", "swish").
        negative_slope: LeakyReLU's slope (>= 0; default the GAN's 0.2).
        backend: "auto", "cpu_ext", "triton", "cuda_ext" or "reference".
        alpha: ELU's alpha (>= 0; default 1.0, nn.ELU's).

    Under ``torch.autocast`` the tensors are cast to the autocast dtype first, as for ``F.linear``.
    """
    negative_slope = activations.resolve_param(activation, negative_slope, alpha) if (
        alpha is not None or negative_slope is None) else negative_slope
    x, weight, bias = _autocast.cast(x, weight, bias)
    _validate.check_linear(x, weight, bias, "fused_linear")
    if _validate.is_empty(x):  # no kernel for zero rows: nn.Linear's own empty result, with its gradients
        return reference.fused_linear(x, weight, bias, _plan.__wrapped__(activation, negative_slope, backend,
                                                                         x.device)[0], float(negative_slope))
    how = _fastpath.route(x, weight, bias)
    if how == "op":
        act = activations.check_activation(activation, negative_slope)
        backends.check_backend(backend)
        return _fused_linear_op(x, weight, bias, activations.name(act), float(negative_slope), backend)
    try:
        code, name, slope, chosen = _plan(activation, negative_slope, backend, x.device)
    except TypeError:  # an unhashable argument: the checks' own error
        code, name, slope, chosen = _plan.__wrapped__(activation, negative_slope, backend, x.device)
    if how == "direct":
        return _forward_nd(chosen, x, weight, bias, code, slope)
    if chosen in ("cpu_ext", "cuda_ext"):
        # The whole autograd node in C++ (it keeps z for gelu / silu itself) (csrc/fused_linear_autograd.cpp): no Python in the backward.
        return torch.ops.fastgan_ext.fused_linear(x, weight, bias, code, slope)
    return _EagerAutograd.apply(x, weight, bias, name, slope, backend)


@functools.lru_cache(maxsize=256)
def _plan(activation, negative_slope, backend: str, device: torch.device) -> tuple[int, str, float, str]:
    """(activation code, its name, the slope, the concrete backend) for one call's non-tensor
    arguments, checked once per distinct combination (a failed check raises and caches nothing)."""
    act = activations.check_activation(activation, negative_slope)
    backends.check_backend(backend)
    return int(act), activations.name(act), float(negative_slope), backends.resolve(backend, device, _EXT_FWD)

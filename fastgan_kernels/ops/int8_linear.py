"""Int8 inference ops: symmetric quantisation and int8 x int8 -> int32 linear with a fused epilogue.

* ``fastgan::quantize_per_token(x) -> (q, scale)``: per-row symmetric int8,
  ``scale = max|x_row| / 127`` (1/127 for an all-zero row), ``q = clamp(round(x / scale), -127, 127)``
  with round-half-to-even. The same function quantises a weight per output channel.
* ``fastgan::quantize_per_tensor(x, scale) -> q``: static per-tensor scale from calibration.
* ``fastgan::int8_linear(xq, x_scale, wq, w_scale, bias, w_packed, activation, negative_slope,
  out_dtype, out_scale, backend)``: ``acc = xq @ wq.T`` in int32, then
  ``y = act(acc * x_scale[m] * w_scale[n] + bias[n])`` in the epilogue, written as float
  (fp32 / bf16 / fp16), requantised to int8 with ``out_scale`` (the next layer's static input
  scale, so int8 layers chain without a float round trip), or as the raw int32 accumulator.
* ``fastgan::int8_linear_dynamic(x, wq, w_scale, bias, w_packed, activation, negative_slope,
  out_dtype, out_scale, backend)``: ``quantize_per_token(x)`` then ``int8_linear`` in one call, for a
  float ``x`` (what a dynamic Int8Linear does). The CPU kernel quantises each row while it packs x
  for the GEMM (one pass over x, one kernel call), bit for bit the two-step result; the Triton and
  CUDA backends compose their quantize_per_token and int8_linear kernels for now.

No zero points. ``K`` is limited so that int32 accumulation cannot overflow:
``127 * 127 * K < 2**31``.

A NaN or Inf in a quantiser's input raises a ValueError (PyTorch's dynamic int8 silently turns it
into finite numbers). The CPU kernels detect it while they compute the scales, at no cost. The
GPU kernels (Triton, CUDA) mark such a row with a NaN scale and such elements with -128 (a value
symmetric quantisation never produces), and the entry points below check for the mark, which costs
one host synchronisation per call; ``check_finite=False`` skips it (then a bad row's float outputs
are NaN, and int8 outputs carry the -128 mark). Under torch.compile the check is skipped.

``w_packed`` is the backend's packed weight (``pack_weight``), made once by the module; the
CPU kernels use it, others ignore it (and pack per call when it is missing).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from .. import _ext as _extension
from .. import activations, backends
from . import _fastpath, _validate
from ._int8_reference import (reference_int8_linear, reference_int8_linear_dynamic,  # noqa: F401 (public here)
                              reference_quantize_per_tensor, reference_quantize_per_token)

MAX_K = (2 ** 31 - 1) // (127 * 127)  # 133143: largest K whose int32 accumulator cannot overflow
FLOAT_OUT = (torch.float32, torch.bfloat16, torch.float16)
OUT_DTYPES = FLOAT_OUT + (torch.int8, torch.int32)


def _triton():
    from ..triton import int8_linear as kernels  # lazily: triton is optional

    return kernels


def _ext():
    return torch.ops.fastgan_ext


@functools.lru_cache(maxsize=None)
def _has_fused_cpu_kernel() -> bool:
    return _extension.has_kernel("int8_linear_dynamic_fwd", "CPU")


_ACT_CODES = {name: code for code, name in enumerate(activations.NAMES)}  # canonical names (run_* callers)


# --- custom ops --------------------------------------------------------------------------------
def _quantize_per_token(x: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    chosen = backends.resolve(backend, x.device, "quantize_per_token")
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])  # (reshapes cost ~1 us each on small layers)
    if chosen in ("cpu_ext", "cuda_ext"):
        q, scale = _ext().quantize_per_token(x2)
    elif chosen == "triton":
        q, scale = _triton().quantize_per_token(x2)
    else:
        q, scale = reference_quantize_per_token(x2)
    return (q, scale) if x.dim() == 2 else (q.reshape(x.shape), scale.reshape(x.shape[:-1]))


@torch.library.custom_op("fastgan::quantize_per_token", mutates_args=())
def _quantize_per_token_op(x: Tensor, backend: str) -> tuple[Tensor, Tensor]:
    return _quantize_per_token(x, backend)


@_quantize_per_token_op.register_fake
def _(x, backend):
    return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)


def _quantize_per_tensor(x: Tensor, scale: Tensor, backend: str) -> Tensor:
    chosen = backends.resolve(backend, x.device, "quantize_per_tensor")
    x2 = x if x.dim() == 2 else x.reshape(-1, x.shape[-1])
    if chosen in ("cpu_ext", "cuda_ext"):
        q = _ext().quantize_per_tensor(x2, scale)
    elif chosen == "triton":
        q = _triton().quantize_per_tensor(x2, scale)
    else:
        q = reference_quantize_per_tensor(x2, scale)
    return q if x.dim() == 2 else q.reshape(x.shape)


@torch.library.custom_op("fastgan::quantize_per_tensor", mutates_args=())
def _quantize_per_tensor_op(x: Tensor, scale: Tensor, backend: str) -> Tensor:
    return _quantize_per_tensor(x, scale, backend)


@_quantize_per_tensor_op.register_fake
def _(x, scale, backend):
    return x.new_empty(x.shape, dtype=torch.int8)


def _int8_linear(xq: Tensor, x_scale: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                 w_packed: Optional[Tensor], activation: str, negative_slope: float, out_dtype: torch.dtype,
                 out_scale: Optional[Tensor], backend: str) -> Tensor:
    return _int8_kernels(xq, x_scale, wq, w_scale, bias, w_packed, _act_code(activation, negative_slope),
                         negative_slope, out_dtype, out_scale, backends.resolve(backend, xq.device, "int8_linear_fwd"))


def _act_code(activation: str, negative_slope: float) -> int:
    return int(activations.check_activation(activation, negative_slope))


def _int8_kernels(xq, x_scale, wq, w_scale, bias, w_packed, act: int, negative_slope, out_dtype, out_scale,
                  chosen: str) -> Tensor:
    n, k = wq.shape
    x2 = xq if xq.dim() == 2 else xq.reshape(-1, k)
    xs = x_scale if x_scale.dim() == 1 else x_scale.reshape(-1)
    if chosen in ("cpu_ext", "cuda_ext"):
        packed = w_packed if w_packed is not None else _ext().int8_pack_weight(wq)
        y = _ext().int8_linear_fwd(x2, xs, packed, w_scale, bias, n, act, negative_slope, out_dtype, out_scale)
    elif chosen == "triton":
        y = _triton().int8_linear(x2, xs, wq, w_scale, bias, n, act, negative_slope, out_dtype, out_scale)
    else:
        y = reference_int8_linear(x2, xs, wq, w_scale, bias, act, negative_slope, out_dtype, out_scale)
    return y if xq.dim() == 2 else y.reshape(*xq.shape[:-1], n)


@torch.library.custom_op("fastgan::int8_linear", mutates_args=())
def _int8_linear_op(xq: Tensor, x_scale: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                    w_packed: Optional[Tensor], activation: str, negative_slope: float, out_dtype: torch.dtype,
                    out_scale: Optional[Tensor], backend: str) -> Tensor:
    return _int8_linear(xq, x_scale, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale,
                        backend)


@_int8_linear_op.register_fake
def _(xq, x_scale, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale, backend):
    return xq.new_empty((*xq.shape[:-1], wq.shape[0]), dtype=out_dtype)


def _int8_linear_dynamic(x: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor], w_packed: Optional[Tensor],
                         activation: str, negative_slope: float, out_dtype: torch.dtype, out_scale: Optional[Tensor],
                         backend: str) -> Tensor:
    return _dynamic_kernels(x, wq, w_scale, bias, w_packed, _act_code(activation, negative_slope), negative_slope,
                            out_dtype, out_scale, backends.resolve(backend, x.device, "int8_linear_fwd"))


def _dynamic_kernels(x, wq, w_scale, bias, w_packed, act: int, negative_slope, out_dtype, out_scale, chosen: str):
    """The fused CPU kernel, or the backend's quantize_per_token + int8_linear kernels (Triton, CUDA: for now)."""
    n, k = wq.shape
    x2 = x if x.dim() == 2 else x.reshape(-1, k)
    if chosen in ("cpu_ext", "cuda_ext"):
        ext = _ext()
        packed = w_packed if w_packed is not None else ext.int8_pack_weight(wq)
        if chosen == "cpu_ext" and _has_fused_cpu_kernel():
            y = ext.int8_linear_dynamic_fwd(x2, packed, w_scale, bias, n, act, negative_slope, out_dtype, out_scale)
        else:  # CUDA (or an extension built before the fused kernel)
            xq, xs = ext.quantize_per_token(x2)
            y = ext.int8_linear_fwd(xq, xs, packed, w_scale, bias, n, act, negative_slope, out_dtype, out_scale)
    elif chosen == "triton":
        xq, xs = _triton().quantize_per_token(x2)
        y = _triton().int8_linear(xq, xs, wq, w_scale, bias, n, act, negative_slope, out_dtype, out_scale)
    else:
        y = reference_int8_linear_dynamic(x2, wq, w_scale, bias, act, negative_slope, out_dtype, out_scale)
    return y if x.dim() == 2 else y.reshape(*x.shape[:-1], n)


@torch.library.custom_op("fastgan::int8_linear_dynamic", mutates_args=())
def _int8_linear_dynamic_op(x: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                            w_packed: Optional[Tensor], activation: str, negative_slope: float,
                            out_dtype: torch.dtype, out_scale: Optional[Tensor], backend: str) -> Tensor:
    return _int8_linear_dynamic(x, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale,
                                backend)


@_int8_linear_dynamic_op.register_fake
def _(x, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale, backend):
    return x.new_empty((*x.shape[:-1], wq.shape[0]), dtype=out_dtype)


# --- checked entry points ----------------------------------------------------------------------
def _check_scale(scale, name: str, sizes: tuple[int, ...], device, op: str) -> None:
    if scale is None:
        raise TypeError(f"{op}: {name} is required (a float32 tensor of shape {' or '.join(map(str, sizes))})")
    _validate.check_tensor(scale, f"{op}: {name}")
    if scale.dtype != torch.float32:
        raise TypeError(f"{op}: {name} must be float32, got {scale.dtype}")
    if scale.device != device:
        raise ValueError(f"{op}: {name} must be on {device}, got {scale.device}")
    if tuple(scale.shape) not in [(s,) for s in sizes] + ([()] if 1 in sizes else []):
        raise ValueError(f"{op}: {name} must have shape {' or '.join(f'({s},)' for s in sizes)}, "
                         f"got {tuple(scale.shape)}")


def check_in_features(k: int, op: str) -> None:
    if k > MAX_K:
        raise ValueError(f"{op}: in_features K = {k} is too large for int32 accumulation "
                         f"(127 * 127 * K must stay below 2**31, so K <= {MAX_K})")


def _marks_non_finite(backend: str, device, ext_op: str) -> bool:
    """Whether the backend that runs here marks non-finite input instead of raising (the GPU kernels)."""
    chosen = backends.resolve(backend, device, ext_op)
    return chosen == "triton" or (chosen == "cuda_ext" and torch.device(device).type == "cuda")


def _raise_if_marked(bad: Tensor, op: str) -> None:
    """The GPU kernels' non-finite mark -> the same ValueError the CPU kernels raise (one sync)."""
    if not torch.compiler.is_compiling() and bool(bad.any()):
        raise ValueError(f"{op}: x has NaN or Inf; int8 quantisation would lose it")


def quantize_per_token(x: Tensor, backend: str = "auto", check_finite: bool = True) -> tuple[Tensor, Tensor]:
    """Per-row symmetric int8 quantisation of ``x [..., K]`` -> (q int8 [..., K], scale fp32 [...])."""
    _validate.check_tensor(x, "quantize_per_token: x")
    _validate.check_float(x, "quantize_per_token: x")
    _validate.check_input(x, x.shape[-1] if x.dim() else 0, "quantize_per_token")
    backends.check_backend(backend)
    return run_quantize_per_token(x, backend, check_finite)


def run_quantize_per_token(x: Tensor, backend: str, check_finite: bool) -> tuple[Tensor, Tensor]:
    """quantize_per_token without the argument checks (for callers that made them, e.g. Int8Linear)."""
    if _validate.is_empty(x):  # zero rows: nothing to quantise, no kernel
        return x.new_empty(x.shape, dtype=torch.int8), x.new_empty(x.shape[:-1], dtype=torch.float32)
    run = _quantize_per_token if _fastpath.eligible(x) else _quantize_per_token_op
    q, scale = run(x, backend)
    if check_finite and _marks_non_finite(backend, x.device, "quantize_per_token"):
        _raise_if_marked(torch.isnan(scale), "quantize_per_token")
    return q, scale


def quantize_per_tensor(x: Tensor, scale: Tensor, backend: str = "auto", check_finite: bool = True) -> Tensor:
    """Static symmetric int8 quantisation with a calibrated per-tensor ``scale`` [1]."""
    _validate.check_tensor(x, "quantize_per_tensor: x")
    _validate.check_float(x, "quantize_per_tensor: x")
    _validate.check_input(x, x.shape[-1] if x.dim() else 0, "quantize_per_tensor")
    _check_scale(scale, "scale", (1,), x.device, "quantize_per_tensor")
    backends.check_backend(backend)
    return run_quantize_per_tensor(x, scale.reshape(1), backend, check_finite)


def run_quantize_per_tensor(x: Tensor, scale: Tensor, backend: str, check_finite: bool) -> Tensor:
    """quantize_per_tensor without the argument checks (``scale`` already of shape [1])."""
    if _validate.is_empty(x):
        return x.new_empty(x.shape, dtype=torch.int8)
    run = _quantize_per_tensor if _fastpath.eligible(x, scale) else _quantize_per_tensor_op
    q = run(x, scale, backend)
    if check_finite and _marks_non_finite(backend, x.device, "quantize_per_tensor"):
        _raise_if_marked(q == -128, "quantize_per_tensor")
    return q


def quantize_weight(weight: Tensor, backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Per-output-channel symmetric int8 weight: (wq int8 [N, K], w_scale fp32 [N])."""
    if weight.dim() != 2:
        raise ValueError(f"quantize_weight: weight must be 2-D [N, K], got shape {tuple(weight.shape)}")
    return quantize_per_token(weight.detach(), backend)


def pack_weight(wq: Tensor, backend: str = "auto") -> Optional[Tensor]:
    """The packed weight the chosen backend wants (None where it reads ``wq`` as is)."""
    chosen = backends.resolve(backend, wq.device, "int8_pack_weight")
    return _ext().int8_pack_weight(wq) if chosen in ("cpu_ext", "cuda_ext") else None


def int8_linear(xq: Tensor, x_scale: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor] = None,
                activation: str = "identity", negative_slope: float = 0.2, out_dtype: torch.dtype = torch.float32,
                out_scale: Optional[Tensor] = None, w_packed: Optional[Tensor] = None,
                backend: str = "auto") -> Tensor:
    """``act((xq @ wq.T) * x_scale * w_scale + bias)`` with an int32 accumulator.

    Args:
        xq: int8 ``[..., K]``; x_scale: fp32 ``[M]`` (per token) or ``[1]`` (per tensor).
        wq: int8 ``[N, K]``; w_scale: fp32 ``[N]``; bias: fp32 ``[N]`` or None.
        out_dtype: float32 / bfloat16 / float16, int8 (requantised with ``out_scale`` [1]) or
            int32 (the raw accumulator: no scales, bias or activation allowed).
        w_packed: ``pack_weight(wq)``, to skip packing on every call.
    """
    op = "int8_linear"
    for name, t in (("xq", xq), ("wq", wq)):
        _validate.check_tensor(t, f"{op}: {name}")
        if t.dtype != torch.int8:
            raise TypeError(f"{op}: {name} must be int8 (quantise it first), got {t.dtype}")
    m = _validate.check_input(xq, _check_wq(op, wq, xq.device, "xq"), op)
    _check_scale(x_scale, "x_scale", (m, 1), xq.device, op)
    act, out_scale = _check_layer(op, xq.device, wq, w_scale, bias, activation, negative_slope, out_dtype, out_scale)
    backends.check_backend(backend)
    return run_int8_linear(xq, x_scale.reshape(-1), wq, w_scale, bias, w_packed, act, float(negative_slope),
                           out_dtype, out_scale, backend)


def _check_wq(op: str, wq: Tensor, device, x_name: str) -> int:
    """wq int8 [N, K] on the input's device; returns K."""
    if wq.dim() != 2:
        raise ValueError(f"{op}: wq must be 2-D [out_features, in_features], got shape {tuple(wq.shape)}")
    if wq.device != device:
        raise ValueError(f"{op}: wq must be on {x_name}'s device {device}, got {wq.device}")
    return wq.shape[1]


def _check_layer(op: str, device, wq: Tensor, w_scale, bias, activation, negative_slope, out_dtype, out_scale):
    """The checks of everything but the input of an int8 linear; (activation name, out_scale [1] or None)."""
    return check_epilogue(op, device, tuple(wq.shape), w_scale, bias, activation, negative_slope, out_dtype,
                          out_scale)


def check_epilogue(op: str, device, shape: tuple[int, int], w_scale, bias, activation, negative_slope, out_dtype,
                   out_scale):
    """_check_layer for a weight of ``shape`` (N, K) in any storage (dense, block-sparse)."""
    n, k = shape
    check_in_features(k, op)
    _check_scale(w_scale, "w_scale", (n,), device, op)
    if bias is not None:
        _check_scale(bias, "bias", (n,), device, op)
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"{op}: out_dtype must be one of {OUT_DTYPES}, got {out_dtype}")
    act = activations.check_activation(activation, negative_slope)
    if out_dtype == torch.int8:
        _check_scale(out_scale, "out_scale", (1,), device, op)
        out_scale = out_scale.reshape(1)
    elif out_scale is not None:
        raise ValueError(f"{op}: out_scale is only used with out_dtype=torch.int8, got out_dtype={out_dtype}")
    if out_dtype == torch.int32 and (bias is not None or act != activations.Activation.IDENTITY):
        raise ValueError(f"{op}: out_dtype=torch.int32 returns the raw accumulator; bias and activation "
                         f"must be None and 'identity'")
    return activations.name(act), out_scale


def run_int8_linear(xq: Tensor, x_scale: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                    w_packed: Optional[Tensor], activation: str, negative_slope: float, out_dtype: torch.dtype,
                    out_scale: Optional[Tensor], backend: str) -> Tensor:
    """int8_linear without the argument checks (canonical arguments: activation name, x_scale 1-D)."""
    if _validate.is_empty(xq):  # zero rows: an empty output, no kernel (as nn.Linear)
        return xq.new_empty((*xq.shape[:-1], wq.shape[0]), dtype=out_dtype)
    if _fastpath.eligible(xq, x_scale, wq, w_scale, bias, w_packed, out_scale):
        return _int8_kernels(xq, x_scale, wq, w_scale, bias, w_packed, _ACT_CODES[activation], negative_slope,
                             out_dtype, out_scale, backends.resolve(backend, xq.device, "int8_linear_fwd"))
    return _int8_linear_op(xq, x_scale, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale,
                           backend)


def int8_linear_dynamic(x: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor] = None,
                        activation: str = "identity", negative_slope: float = 0.2,
                        out_dtype: torch.dtype = torch.float32, out_scale: Optional[Tensor] = None,
                        w_packed: Optional[Tensor] = None, backend: str = "auto", check_finite: bool = True) -> Tensor:
    """``int8_linear(*quantize_per_token(x), wq, w_scale, ...)`` in one call, for a float ``x [..., K]``.

    Equal to the two steps (bit for bit on the CPU, where one kernel quantises x while it packs it
    for the GEMM); the other arguments are int8_linear's. A NaN / Inf in x raises a ValueError as in
    quantize_per_token (on GPUs ``check_finite=True`` runs the two steps, to see the scales' mark).
    """
    op = "int8_linear_dynamic"
    _validate.check_tensor(x, f"{op}: x")
    _validate.check_float(x, f"{op}: x")
    _validate.check_tensor(wq, f"{op}: wq")
    if wq.dtype != torch.int8:
        raise TypeError(f"{op}: wq must be int8 (quantise it first), got {wq.dtype}")
    _validate.check_input(x, _check_wq(op, wq, x.device, "x"), op)
    act, out_scale = _check_layer(op, x.device, wq, w_scale, bias, activation, negative_slope, out_dtype, out_scale)
    backends.check_backend(backend)
    return run_int8_linear_dynamic(x, wq, w_scale, bias, w_packed, act, float(negative_slope), out_dtype, out_scale,
                                   backend, check_finite)


def run_int8_linear_dynamic(x: Tensor, wq: Tensor, w_scale: Tensor, bias: Optional[Tensor],
                            w_packed: Optional[Tensor], activation: str, negative_slope: float,
                            out_dtype: torch.dtype, out_scale: Optional[Tensor], backend: str,
                            check_finite: bool) -> Tensor:
    """int8_linear_dynamic without the argument checks (canonical arguments; e.g. Int8Linear)."""
    if _validate.is_empty(x):
        return x.new_empty((*x.shape[:-1], wq.shape[0]), dtype=out_dtype)
    chosen = backends.resolve(backend, x.device, "int8_linear_fwd")
    if check_finite and chosen in ("triton", "cuda_ext"):  # the GPU kernels mark NaN in the scales: two steps
        xq, x_scale = run_quantize_per_token(x, backend, True)
        return run_int8_linear(xq, x_scale.reshape(-1), wq, w_scale, bias, w_packed, activation, negative_slope,
                               out_dtype, out_scale, backend)
    if _fastpath.eligible(x, wq, w_scale, bias, w_packed, out_scale):
        return _dynamic_kernels(x, wq, w_scale, bias, w_packed, _ACT_CODES[activation], negative_slope, out_dtype,
                                out_scale, chosen)
    return _int8_linear_dynamic_op(x, wq, w_scale, bias, w_packed, activation, negative_slope, out_dtype, out_scale,
                                   backend)

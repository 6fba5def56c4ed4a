"""The plain-PyTorch references of the int8 ops (fastgan_kernels.ops.int8_linear re-exports them):
what every backend must compute, bit for bit for the quantisers and the int32 accumulator."""
from __future__ import annotations

import torch
from torch import Tensor

from .. import activations


def _check_finite_rows(x: Tensor, name: str) -> None:
    bad = ~torch.isfinite(x).all(dim=-1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} has NaN or Inf (first in row {row}); int8 quantisation would lose it")


def _round_clamp(v: Tensor) -> Tensor:
    return torch.round(v).clamp_(-127, 127).to(torch.int8)


def reference_quantize_per_token(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.float()
    _check_finite_rows(x, "x")
    amax = x.abs().amax(dim=-1)
    scale = torch.where(amax > 0, amax / 127.0, torch.full_like(amax, 1.0 / 127.0))
    return _round_clamp(x / scale[:, None]), scale


def reference_quantize_per_tensor(x: Tensor, scale: Tensor) -> Tensor:
    x = x.float()
    _check_finite_rows(x.reshape(-1, x.shape[-1]), "x")
    return _round_clamp(x / scale.float())


def reference_int8_linear(xq, x_scale, wq, w_scale, bias, act, slope, out_dtype, out_scale) -> Tensor:
    # float64 holds every int32 accumulator exactly (|acc| < 2**31 < 2**53) on any device.
    acc = xq.double() @ wq.double().t()
    if out_dtype == torch.int32:
        return acc.to(torch.int32)
    y = acc.float() * x_scale.float().reshape(-1, 1) * w_scale.float().reshape(1, -1)
    if bias is not None:
        y = y + bias.float()
    y = activations.apply(y, act, slope)
    if out_dtype == torch.int8:
        return _round_clamp(y / out_scale.float())
    return y.to(out_dtype)


def reference_int8_linear_dynamic(x, wq, w_scale, bias, act, slope, out_dtype, out_scale) -> Tensor:
    xq, x_scale = reference_quantize_per_token(x)
    return reference_int8_linear(xq, x_scale, wq, w_scale, bias, act, slope, out_dtype, out_scale)

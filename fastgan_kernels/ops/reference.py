"""Plain-PyTorch references: what every kernel must compute.

They compute in float32 from the (possibly low-precision) inputs and round the
result to the input dtype once, which is what a kernel with an fp32 accumulator
and a fused epilogue produces up to summation order.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .. import activations


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 activation, negative_slope: float) -> torch.Tensor:
    z = F.linear(x.float(), weight.float(), None if bias is None else bias.float())
    return activations.apply(z, activation, negative_slope).to(x.dtype)


def fused_linear_backward(grad_out, y, x, weight, activation, negative_slope,
                          need_x: bool, need_weight: bool, need_bias: bool):
    """(grad_x, grad_weight, grad_bias) of fused_linear from the saved output y; None where not needed."""
    g = grad_out.float()
    if y is not None:
        g = activations.grad_from_output(g, y.float(), activation, negative_slope)
    g2 = g.reshape(-1, weight.shape[0])
    gx = (g2 @ weight.float()).reshape(x.shape).to(x.dtype) if need_x else None
    gw = (g2.t() @ x.reshape(-1, weight.shape[1]).float()).to(weight.dtype) if need_weight else None
    gb = g2.sum(0).to(weight.dtype) if need_bias else None
    return gx, gw, gb

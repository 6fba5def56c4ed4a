"""Folding an eval-mode ``BatchNorm1d`` into the ``Linear`` before it.

In eval mode (running statistics) BatchNorm is a per-feature affine map::

    bn(z) = (z - mean) / sqrt(var + eps) * gamma + beta = z * s + (beta - mean * s),  s = gamma / sqrt(var + eps)

so ``bn(x @ W.T + b) = x @ (s[:, None] * W).T + ((b - mean) * s + beta)``: one Linear with a
scaled weight and a shifted bias, which then fuses with the activation after it. Without
``affine`` gamma = 1 and beta = 0. The fold is computed in float64 and rounded once to the
weight's dtype, so the folded layer is as close to eager as one rounding allows.

In training mode BatchNorm normalises with the *batch's* statistics (and updates the running
ones), which no fixed weight can express: the converters leave it, and the Linear before it,
as they are. Neither can a BatchNorm built with ``track_running_stats=False`` be folded (it
uses batch statistics in eval mode too).

A folded model no longer holds the BatchNorm's tensors: its slot becomes a
:class:`FoldedBatchNorm` (no parameters, no buffers; identity) and the Linear's ``weight`` and
``bias`` keys hold the folded values. See docs/design.md ("BatchNorm folding") for going back.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn


def uses_batch_statistics(bn: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether ``bn``'s forward normalises with the batch's statistics (then it cannot be folded)."""
    return bn.training or bn.running_mean is None or bn.running_var is None


def why_not_foldable(bn: nn.Module, linear: nn.Linear) -> Optional[str]:
    """None when ``bn`` (right after ``linear``) can be folded into it, else the reason."""
    if type(bn) is not nn.BatchNorm1d:
        return f"{type(bn).__name__} is not a BatchNorm1d"
    if uses_batch_statistics(bn):
        what = "training mode" if bn.training else "no running statistics (track_running_stats=False)"
        return f"BatchNorm1d in {what}: normalises with batch statistics, left as is"
    if bn.num_features != linear.out_features:
        return f"BatchNorm1d has {bn.num_features} features, the Linear {linear.out_features} outputs"
    return None


def fold_batchnorm(weight: torch.Tensor, bias: Optional[torch.Tensor],
                   bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') with ``x @ W'.T + b' == bn(x @ weight.T + bias)`` for an eval-mode ``bn``."""
    f64 = dict(dtype=torch.float64)
    scale = torch.rsqrt(bn.running_var.detach().to(**f64) + bn.eps)
    shift = -bn.running_mean.detach().to(**f64)
    if bias is not None:
        shift = shift + bias.detach().to(**f64)
    if bn.affine:
        scale = scale * bn.weight.detach().to(**f64)
    new_bias = shift * scale
    if bn.affine:
        new_bias = new_bias + bn.bias.detach().to(**f64)
    new_weight = weight.detach().to(**f64) * scale[:, None]
    return new_weight.to(weight.dtype), new_bias.to(weight.dtype)


def folded_linear(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """A new ``nn.Linear`` computing ``bn(linear(x))`` (eval-mode ``bn``); always with a bias."""
    w, b = fold_batchnorm(linear.weight, linear.bias, bn)
    out = nn.Linear(linear.in_features, linear.out_features, bias=True, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    out.weight.requires_grad_(linear.weight.requires_grad)
    out.bias.requires_grad_(linear.weight.requires_grad)
    out.train(linear.training)
    return out


class FoldedBatchNorm(nn.Module):
    """What is left in a BatchNorm1d's slot once it is folded into the Linear ``into``: the identity.

    It holds no tensors (the folded values live in that Linear's replacement), only a
    description for ``explain`` and ``repr``. Switching it to training mode warns: the folded
    model keeps applying the running statistics baked into the weights, where the original
    would normalise with batch statistics.
    """

    def __init__(self, bn: nn.BatchNorm1d, into: str):
        super().__init__()
        self.num_features, self.eps, self.affine = bn.num_features, float(bn.eps), bn.affine
        self.into = into
        self.training = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def train(self, mode: bool = True) -> "FoldedBatchNorm":
        if mode and not self.training:
            warnings.warn(f"fastgan_kernels: this BatchNorm1d was folded into {self.into or 'the Linear before it'} "
                          f"with its running statistics; in training mode the folded model still applies them "
                          f"(eager BatchNorm would use batch statistics). Convert the model in training mode "
                          f"(model.train() before fuse/prune/quantize) to keep BatchNorm.", stacklevel=2)
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, affine={self.affine}, folded into {self.into!r}"


__all__ = ["uses_batch_statistics", "why_not_foldable", "fold_batchnorm", "folded_linear", "FoldedBatchNorm"]

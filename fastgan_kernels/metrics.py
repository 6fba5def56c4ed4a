"""Fidelity metrics for compressed models."""
from __future__ import annotations

import math

import torch


def sqnr(reference: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio in dB: 10 log10(sum(ref^2) / sum((ref - test)^2)).

    Infinite when ``test`` equals ``reference`` exactly.
    """
    ref, tst = reference.detach().double(), test.detach().double()
    if ref.shape != tst.shape:
        raise ValueError(f"sqnr: shapes differ: reference {tuple(ref.shape)} vs test {tuple(tst.shape)}")
    noise = (ref - tst).square().sum().item()
    signal = ref.square().sum().item()
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise) if signal > 0 else -math.inf


def psnr(reference: torch.Tensor, test: torch.Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB: 10 log10(data_range^2 / MSE).

    ``data_range`` is max - min of the signal: 2.0 for images in [-1, 1] (Tanh outputs).
    """
    ref, tst = reference.detach().double(), test.detach().double()
    if ref.shape != tst.shape:
        raise ValueError(f"psnr: shapes differ: reference {tuple(ref.shape)} vs test {tuple(tst.shape)}")
    mse = (ref - tst).square().mean().item()
    return math.inf if mse == 0.0 else 10.0 * math.log10(data_range ** 2 / mse)

"""The activations every fastgan op can fuse into its epilogue.

One table serves the whole package: the Python ops pass the integer ``code`` to
the C++, CUDA and Triton kernels (which hard-code the same numbering), the
converters map ``nn`` modules and functional calls onto names, and the
references below define what every kernel must compute.

The backward formulas take the *output* ``y = act(z)`` rather than the
pre-activation ``z``: the forward never has to keep ``z`` alive, and the kernels
apply the derivative while they load ``grad_out`` (the gradient GEMMs'
prologue). That is exact for every activation here provided LeakyReLU's slope is
non-negative (then ``sign(y) == sign(z)``), which :func:`check_activation`
enforces.
"""
from __future__ import annotations

import enum

import torch


class Activation(enum.IntEnum):
    """Activation codes shared with the kernels (csrc/cpu/activation.h, csrc/cuda, triton)."""

    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    TANH = 3
    SIGMOID = 4


_ALIASES = {
    "identity": Activation.IDENTITY,
    "none": Activation.IDENTITY,
    "linear": Activation.IDENTITY,
    "relu": Activation.RELU,
    "leaky_relu": Activation.LEAKY_RELU,
    "leakyrelu": Activation.LEAKY_RELU,
    "tanh": Activation.TANH,
    "sigmoid": Activation.SIGMOID,
}

NAMES = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")


def check_activation(activation: str | int | Activation, negative_slope: float = 0.01) -> Activation:
    """Return the :class:`Activation` for ``activation`` or raise a ValueError naming it."""
    if isinstance(activation, Activation):
        act = activation
    elif isinstance(activation, bool):  # bool is an int; refuse it explicitly
        raise TypeError(f"activation must be one of {NAMES}, got bool {activation!r}")
    elif isinstance(activation, int):
        try:
            act = Activation(activation)
        except ValueError:
            raise ValueError(f"activation code must be in 0..4 ({NAMES}), got {activation}") from None
    elif isinstance(activation, str):
        act = _ALIASES.get(activation.lower())
        if act is None:
            raise ValueError(f"activation must be one of {NAMES}, got {activation!r}")
    else:
        raise TypeError(f"activation must be a str (one of {NAMES}), got {type(activation).__name__}")
    if act == Activation.LEAKY_RELU:
        if not isinstance(negative_slope, (int, float)) or isinstance(negative_slope, bool):
            raise TypeError(f"negative_slope must be a float, got {type(negative_slope).__name__}")
        if not (negative_slope >= 0.0) or negative_slope != negative_slope or negative_slope == float("inf"):
            raise ValueError(
                f"negative_slope must be a finite float >= 0 for leaky_relu "
                f"(the backward reads the sign of the output), got {negative_slope}"
            )
    return act


def name(activation: Activation | int) -> str:
    return NAMES[int(activation)]


def apply(z: torch.Tensor, activation: Activation | int | str, negative_slope: float = 0.01) -> torch.Tensor:
    """Reference activation in plain PyTorch."""
    act = check_activation(activation, negative_slope)
    if act == Activation.IDENTITY:
        return z
    if act == Activation.RELU:
        return torch.relu(z)
    if act == Activation.LEAKY_RELU:
        return torch.nn.functional.leaky_relu(z, negative_slope)
    if act == Activation.TANH:
        return torch.tanh(z)
    return torch.sigmoid(z)


def grad_from_output(grad_out: torch.Tensor, y: torch.Tensor, activation: Activation | int | str,
                     negative_slope: float = 0.01) -> torch.Tensor:
    """``grad_out * act'(z)`` expressed through the saved output ``y = act(z)``."""
    act = check_activation(activation, negative_slope)
    if act == Activation.IDENTITY:
        return grad_out
    if act == Activation.RELU:
        return torch.where(y > 0, grad_out, torch.zeros_like(grad_out))
    if act == Activation.LEAKY_RELU:
        return torch.where(y > 0, grad_out, grad_out * negative_slope)
    if act == Activation.TANH:
        return grad_out * (1 - y * y)
    return grad_out * (y * (1 - y))

"""The activations every fastgan op can fuse into its epilogue.

One table serves the whole package: the Python ops pass the integer ``code`` to
the C++, CUDA and Triton kernels (which hard-code the same numbering), the
converters map ``nn`` modules and functional calls onto names, and the
references below define what every kernel must compute.

**The activation's parameter.** The kernels take one float besides the code:
LeakyReLU's ``negative_slope`` or ELU's ``alpha`` (the ops' ``negative_slope``
argument carries it; the public functions and modules also accept ``alpha=``
for ELU, see :func:`resolve_param`). The other activations ignore it.

**What the backward reads.** The derivative is applied while the gradient
kernels load ``grad_out`` (their prologue), from one saved ``[M, N]`` tensor
(:func:`saves_preactivation` says which):

* the *output* ``y = act(z)`` for identity, relu, leaky_relu, tanh, sigmoid and
  elu: their derivative is a function of ``y`` (exact because LeakyReLU's slope
  and ELU's alpha are non-negative, so ``sign(y) == sign(z)``, which
  :func:`check_activation` enforces; ELU: ``act'(z) = y + alpha`` for ``y <= 0``);
* the *pre-activation* ``z`` for gelu, gelu_tanh and silu, whose derivative is
  not a function of ``y`` (they are not monotone, so ``y`` does not determine
  ``z``). See docs/design.md, "Activations whose backward needs z".
"""
from __future__ import annotations

import enum
import math
from typing import Optional

import torch


class Activation(enum.IntEnum):
    """Activation codes shared with the kernels (csrc/cpu/activation.h, csrc/cuda, triton)."""

    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    TANH = 3
    SIGMOID = 4
    GELU = 5  # 0.5 z (1 + erf(z / sqrt(2))), torch's F.gelu
    GELU_TANH = 6  # F.gelu(z, approximate="tanh")
    SILU = 7  # z sigmoid(z), "swish"
    ELU = 8  # z > 0 ? z : alpha (e^z - 1)


_ALIASES = {
    "identity": Activation.IDENTITY,
    "none": Activation.IDENTITY,
    "linear": Activation.IDENTITY,
    "relu": Activation.RELU,
    "leaky_relu": Activation.LEAKY_RELU,
    "leakyrelu": Activation.LEAKY_RELU,
    "tanh": Activation.TANH,
    "sigmoid": Activation.SIGMOID,
    "gelu": Activation.GELU,
    "gelu_erf": Activation.GELU,
    "gelu_tanh": Activation.GELU_TANH,
    "gelu_new": Activation.GELU_TANH,  # the Hugging Face name of the tanh approximation
    "gelu_pytorch_tanh": Activation.GELU_TANH,
    "silu": Activation.SILU,
    "swish": Activation.SILU,
    "elu": Activation.ELU,
}

NAMES = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "elu")

# Activations whose backward reads the pre-activation z instead of the output y.
_NEEDS_Z = frozenset({Activation.GELU, Activation.GELU_TANH, Activation.SILU})


def _check_param(value, what: str, act_name: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a float, got {type(value).__name__}")
    if not (value >= 0.0) or value == float("inf"):
        raise ValueError(f"{what} must be a finite float >= 0 for {act_name} "
                         f"(the backward reads the sign of the output), got {value}")


def check_activation(activation: str | int | Activation, negative_slope: float = 0.01) -> Activation:
    """Return the :class:`Activation` for ``activation`` or raise a ValueError naming it.

    ``negative_slope`` is the activation's parameter: checked as LeakyReLU's slope or ELU's alpha.
    """
    if isinstance(activation, Activation):
        act = activation
    elif isinstance(activation, bool):  # bool is an int; refuse it explicitly
        raise TypeError(f"activation must be one of {NAMES}, got bool {activation!r}")
    elif isinstance(activation, int):
        try:
            act = Activation(activation)
        except ValueError:
            raise ValueError(f"activation code must be in 0..{len(NAMES) - 1} ({NAMES}), got {activation}") from None
    elif isinstance(activation, str):
        act = _ALIASES.get(activation.lower())
        if act is None:
            raise ValueError(f"activation must be one of {NAMES}, got {activation!r}")
    else:
        raise TypeError(f"activation must be a str (one of {NAMES}), got {type(activation).__name__}")
    if act == Activation.LEAKY_RELU:
        _check_param(negative_slope, "negative_slope", "leaky_relu")
    elif act == Activation.ELU:
        _check_param(negative_slope, "alpha", "elu")
    return act


def resolve_param(activation: str | int | Activation, negative_slope: Optional[float] = None,
                  alpha: Optional[float] = None, default_slope: float = 0.2) -> float:
    """The one float the kernels take: LeakyReLU's slope or ELU's alpha.

    ``alpha`` is ELU's spelling (``fused_linear(x, w, b, "elu", alpha=0.5)``); for ELU a given
    ``negative_slope`` is read as alpha too (the converters and the ops carry one float), and
    nothing given means alpha = 1.0, ``nn.ELU``'s default. Passing ``alpha`` with another
    activation is an error rather than silently ignored.
    """
    act = check_activation(activation, 0.0)
    if alpha is not None:
        if act != Activation.ELU:
            raise ValueError(f"alpha is ELU's parameter; activation is {name(act)!r} (use negative_slope for "
                             f"leaky_relu)")
        if negative_slope is not None and negative_slope != alpha:
            raise ValueError(f"elu: got alpha={alpha} and a different negative_slope={negative_slope}; give alpha")
        value = alpha
    elif negative_slope is not None:
        value = negative_slope
    else:
        value = 1.0 if act == Activation.ELU else default_slope
    check_activation(act, value)
    return float(value)


def saves_preactivation(activation: Activation | int | str) -> bool:
    """True when the backward reads the pre-activation z (gelu, gelu_tanh, silu), False for y."""
    return Activation(check_activation(activation, 0.0)) in _NEEDS_Z


def name(activation: Activation | int) -> str:
    return NAMES[int(activation)]


def describe(activation: Activation | int | str, param: float) -> str:
    """``leaky_relu(0.2)``, ``elu(1)`` or the bare name (the modules' repr)."""
    n = name(check_activation(activation, 0.0))
    return f"{n}({param:g})" if n in ("leaky_relu", "elu") else n


def apply(z: torch.Tensor, activation: Activation | int | str, negative_slope: float = 0.01) -> torch.Tensor:
    """Reference activation in plain PyTorch (``negative_slope``: the slope, or ELU's alpha)."""
    act = check_activation(activation, negative_slope)
    F = torch.nn.functional
    if act == Activation.IDENTITY:
        return z
    if act == Activation.RELU:
        return torch.relu(z)
    if act == Activation.LEAKY_RELU:
        return F.leaky_relu(z, negative_slope)
    if act == Activation.TANH:
        return torch.tanh(z)
    if act == Activation.SIGMOID:
        return torch.sigmoid(z)
    if act == Activation.GELU:
        return F.gelu(z)
    if act == Activation.GELU_TANH:
        return F.gelu(z, approximate="tanh")
    if act == Activation.SILU:
        return F.silu(z)
    return F.elu(z, negative_slope)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def grad_from_saved(grad_out: torch.Tensor, saved: torch.Tensor, activation: Activation | int | str,
                    negative_slope: float = 0.01) -> torch.Tensor:
    """``grad_out * act'(z)`` from the tensor the backward keeps: ``z`` where
    :func:`saves_preactivation`, else the output ``y = act(z)``."""
    act = check_activation(activation, negative_slope)
    if act == Activation.IDENTITY:
        return grad_out
    if act == Activation.RELU:
        return torch.where(saved > 0, grad_out, torch.zeros_like(grad_out))
    if act == Activation.LEAKY_RELU:
        return torch.where(saved > 0, grad_out, grad_out * negative_slope)
    if act == Activation.TANH:
        return grad_out * (1 - saved * saved)
    if act == Activation.SIGMOID:
        return grad_out * (saved * (1 - saved))
    if act == Activation.ELU:  # y <= 0: alpha e^z = y + alpha
        return torch.where(saved > 0, grad_out, grad_out * (saved + negative_slope))
    z = saved
    if act == Activation.GELU:  # Phi(z) + z phi(z)
        return grad_out * (0.5 * (1 + torch.erf(z * math.sqrt(0.5))) + z * torch.exp(-0.5 * z * z) * _INV_SQRT_2PI)
    if act == Activation.GELU_TANH:
        t = torch.tanh(_SQRT_2_OVER_PI * (z + 0.044715 * z * z * z))
        du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
        return grad_out * (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du)
    s = torch.sigmoid(z)  # silu
    return grad_out * (s * (1 + z * (1 - s)))


def grad_from_output(grad_out: torch.Tensor, y: torch.Tensor, activation: Activation | int | str,
                     negative_slope: float = 0.01) -> torch.Tensor:
    """The historical name of :func:`grad_from_saved` (for gelu/gelu_tanh/silu pass z, not y)."""
    return grad_from_saved(grad_out, y, activation, negative_slope)

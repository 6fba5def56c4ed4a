"""Drop-in fused Linear + activation modules."""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import activations, backends
from ..ops.fused_linear import fused_linear


class FusedLinear(nn.Module):
    """``act(x @ weight.T + bias)`` as one kernel; a drop-in for ``nn.Linear`` + activation.

    Parameters and ``state_dict`` keys (``weight``, ``bias``) are those of ``nn.Linear``, so a
    trained checkpoint loads unchanged, and initialisation is nn.Linear's.

    Args:
        activation: one of fastgan_kernels.activations.NAMES ("identity", "relu", "leaky_relu", "tanh",
            "sigmoid", "gelu", "gelu_tanh", "silu", "elu").
        negative_slope: the activation's parameter: LeakyReLU's slope (>= 0, default 0.2), or ELU's alpha.
        backend: "auto" (by device), "cpu_ext", "triton", "cuda_ext" or "reference".
        alpha: ELU's alpha (>= 0, default 1.0 like nn.ELU); stored in ``negative_slope``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "leaky_relu",
                 negative_slope: float | None = None, backend: str = "auto", device=None, dtype=None, *,
                 alpha: float | None = None):
        super().__init__()
        for arg, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        negative_slope = activations.resolve_param(activation, negative_slope, alpha)
        act = activations.check_activation(activation, negative_slope)
        self.in_features, self.out_features = in_features, out_features
        self.activation = activations.name(act)
        self.negative_slope = negative_slope
        self.backend = backends.check_backend(backend)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_linear(x, self.weight, self.bias, self.activation, self.negative_slope, self.backend)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "leaky_relu", negative_slope: float | None = None,
                    backend: str = "auto", *, alpha: float | None = None) -> "FusedLinear":
        """A FusedLinear that shares ``linear``'s parameters (no copy; optimisers keep working)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        negative_slope = activations.resolve_param(activation, negative_slope, alpha)
        act = activations.check_activation(activation, negative_slope)
        module.in_features, module.out_features = linear.in_features, linear.out_features
        module.activation = activations.name(act)
        module.negative_slope = negative_slope
        module.backend = backends.check_backend(backend)
        module.weight = linear.weight
        if linear.bias is None:
            module.register_parameter("bias", None)
        else:
            module.bias = linear.bias
        module.train(linear.training)
        return module

    def to_linear(self) -> tuple[nn.Linear, nn.Module]:
        """The equivalent (nn.Linear, activation module) pair, sharing the parameters."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        linear.weight = self.weight
        if self.bias is not None:
            linear.bias = self.bias
        return linear, activation_module(self.activation, self.negative_slope)

    @property
    def alpha(self) -> float:
        """ELU's alpha (the activation's parameter, kept in ``negative_slope``)."""
        return self.negative_slope

    def extra_repr(self) -> str:
        act = activations.describe(self.activation, self.negative_slope)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, activation={act}, backend={self.backend}")


class FusedLinearLeakyReLU(FusedLinear):
    """``leaky_relu(x @ weight.T + bias, negative_slope)``: the GAN layer (slope 0.2 by default)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, negative_slope: float = 0.2,
                 backend: str = "auto", device=None, dtype=None):
        super().__init__(in_features, out_features, bias, "leaky_relu", negative_slope, backend, device, dtype)


def activation_module(activation: str, negative_slope: float = 0.2) -> nn.Module:
    """The ``torch.nn`` module for an activation name (``negative_slope``: the slope, or ELU's alpha)."""
    act = activations.check_activation(activation, negative_slope)
    return {
        activations.Activation.IDENTITY: lambda: nn.Identity(),
        activations.Activation.RELU: lambda: nn.ReLU(),
        activations.Activation.LEAKY_RELU: lambda: nn.LeakyReLU(negative_slope),
        activations.Activation.TANH: lambda: nn.Tanh(),
        activations.Activation.SIGMOID: lambda: nn.Sigmoid(),
        activations.Activation.GELU: lambda: nn.GELU(),
        activations.Activation.GELU_TANH: lambda: nn.GELU(approximate="tanh"),
        activations.Activation.SILU: lambda: nn.SiLU(),
        activations.Activation.ELU: lambda: nn.ELU(negative_slope),
    }[act]()


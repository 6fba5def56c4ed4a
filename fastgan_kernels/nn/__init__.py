"""Drop-in modules built on the fastgan ops."""
from .fused_linear import FusedLinear, FusedLinearLeakyReLU, activation_module

__all__ = ["FusedLinear", "FusedLinearLeakyReLU", "activation_module"]

"""Drop-in modules built on the fastgan ops."""
from .block_sparse_linear import BlockSparseLinear
from .fused_linear import FusedLinear, FusedLinearLeakyReLU, activation_module

__all__ = ["FusedLinear", "FusedLinearLeakyReLU", "BlockSparseLinear", "activation_module"]

"""Drop-in modules built on the fastgan ops."""
from .block_sparse_linear import BlockSparseLinear
from .block_sparse_int8_linear import BlockSparseInt8Linear
from .fused_linear import FusedLinear, FusedLinearLeakyReLU, activation_module
from .int8_linear import Int8Linear

__all__ = ["FusedLinear", "FusedLinearLeakyReLU", "BlockSparseLinear", "Int8Linear", "activation_module",
           "BlockSparseInt8Linear"]

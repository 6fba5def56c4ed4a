"""fastgan_kernels: fused, block-sparse and int8 linear kernels for GAN generators and MLPs."""
from . import activations, backends, metrics, nn
from .convert import compress, explain, fuse, prune, quantize
from .deploy import compile_generator
from .ops import fused_linear

__version__ = "0.1.0"

__all__ = ["activations", "backends", "metrics", "nn", "explain", "compress", "fuse", "prune", "quantize", "compile_generator", "fused_linear", "__version__"]

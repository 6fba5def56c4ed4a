"""The public ops. Each module defines one ``fastgan::`` custom op with its fake kernel,
autograd formula and backend choice; this package re-exports their Python entry points."""
from .fused_linear import fused_linear

__all__ = ["fused_linear"]

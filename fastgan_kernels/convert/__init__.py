"""Converters that turn plain models into fast ones in one call."""
from .compress import CompressReport, compress
from .fuse import fuse
from .prune import PruneReport, prune
from .quantize import QuantizeReport, quantize
from .schedule import CubicSparsitySchedule, GradualPruner

__all__ = ["fuse", "prune", "PruneReport", "quantize", "QuantizeReport", "CubicSparsitySchedule", "GradualPruner",
           "compress", "CompressReport"]

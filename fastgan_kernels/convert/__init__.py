"""Converters that turn plain models into fast ones in one call."""
from .explain import Explanation, explain
from .compress import CompressReport, compress
from .fuse import fuse
from .prune import PruneReport, prune
from .quantize import QuantizeReport, quantize
from .schedule import CubicSparsitySchedule, GradualPruner

__all__ = ["explain", "compress", "CompressReport", "Explanation", "fuse", "prune", "PruneReport", "quantize", "QuantizeReport", "CubicSparsitySchedule", "GradualPruner"]

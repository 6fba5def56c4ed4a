"""Converters that turn plain models into fast ones in one call."""
from .explain import Explanation, explain
from .fuse import fuse
from .prune import PruneReport, prune
from .quantize import QuantizeReport, quantize
from .schedule import CubicSparsitySchedule, GradualPruner

__all__ = ["explain", "Explanation", "fuse", "prune", "PruneReport", "quantize", "QuantizeReport", "CubicSparsitySchedule", "GradualPruner"]

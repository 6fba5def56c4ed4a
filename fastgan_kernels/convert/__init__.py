"""Converters that turn plain models into fast ones in one call."""
from .fuse import fuse

__all__ = ["fuse"]

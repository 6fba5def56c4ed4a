"""Profiling generator inference: GpuMonitor (NVML sampler with energy windows), CPU stats, runner.

``fastgan-kernels profile`` (profile/cli.py) is the front end.
"""
from .monitor import GpuMonitor, Sample, Window
from .nvml_source import NvmlSource, NvmlUnavailable

__all__ = ["GpuMonitor", "Sample", "Window", "NvmlSource", "NvmlUnavailable"]

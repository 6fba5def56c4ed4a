"""The NVML readings the monitor needs, behind a small interface a test can replace.

:class:`NvmlSource` reads one GPU through nvidia-ml-py (``pynvml``). Anything with the
same methods (see :class:`GpuSource`) can stand in for it: the tests inject a fake
NVML-like source. Each reading returns None when the GPU or driver does not support
it (``NVMLError_NotSupported``), so a missing counter is reported as missing, never
as zero.
"""
from __future__ import annotations

from typing import Optional, Protocol

# NVML clock-event ("throttle") reason bits, nvml.h nvmlClocksEventReason*.
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def reason_names(mask: Optional[int]) -> list[str]:
    if not mask:
        return []
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    return names + ([f"unknown_0x{unknown:x}"] if unknown else [])


class GpuSource(Protocol):
    """What the monitor reads; every method may return None (not supported)."""

    def name(self) -> str: ...
    def utilization(self) -> Optional[tuple[float, float]]: ...     # (gpu %, memory-controller %)
    def memory(self) -> Optional[tuple[int, int]]: ...               # (used bytes, total bytes)
    def power_w(self) -> Optional[float]: ...
    def sm_clock_mhz(self) -> Optional[float]: ...
    def temperature_c(self) -> Optional[float]: ...
    def clock_event_reasons(self) -> Optional[int]: ...              # bit mask, CLOCK_EVENT_REASONS
    def total_energy_j(self) -> Optional[float]: ...                 # monotonic counter since driver load


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message says why."""


class NvmlSource:
    """One GPU read through NVML (nvidia-ml-py)."""

    def __init__(self, index: int = 0):
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from None
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            raise NvmlUnavailable(f"NVML did not initialise: {exc}") from None
        try:
            count = pynvml.nvmlDeviceGetCount()
            if index >= count:
                raise NvmlUnavailable(f"NVML sees {count} GPU(s); index {index} does not exist")
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except NvmlUnavailable:
            pynvml.nvmlShutdown()
            raise
        except Exception as exc:
            pynvml.nvmlShutdown()
            raise NvmlUnavailable(f"NVML could not open GPU {index}: {exc}") from None
        self._nvml, self.index = pynvml, index

    def _read(self, fn_name: str, *args):
        fn = getattr(self._nvml, fn_name, None)
        if fn is None:
            return None
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError:
            return None

    def name(self) -> str:
        name = self._read("nvmlDeviceGetName")
        return name.decode() if isinstance(name, bytes) else str(name)

    def utilization(self):
        u = self._read("nvmlDeviceGetUtilizationRates")
        return None if u is None else (float(u.gpu), float(u.memory))

    def memory(self):
        m = self._read("nvmlDeviceGetMemoryInfo")
        return None if m is None else (int(m.used), int(m.total))

    def power_w(self):
        mw = self._read("nvmlDeviceGetPowerUsage")
        return None if mw is None else mw / 1000.0

    def sm_clock_mhz(self):
        clk = self._read("nvmlDeviceGetClockInfo", self._nvml.NVML_CLOCK_SM)
        return None if clk is None else float(clk)

    def temperature_c(self):
        t = self._read("nvmlDeviceGetTemperature", self._nvml.NVML_TEMPERATURE_GPU)
        return None if t is None else float(t)

    def clock_event_reasons(self):
        # Newer drivers call them clock-event reasons; older pynvml only has the throttle name.
        mask = self._read("nvmlDeviceGetCurrentClocksEventReasons")
        if mask is None:
            mask = self._read("nvmlDeviceGetCurrentClocksThrottleReasons")
        return None if mask is None else int(mask)

    def total_energy_j(self):
        mj = self._read("nvmlDeviceGetTotalEnergyConsumption")  # millijoules, Volta and newer
        return None if mj is None else mj / 1000.0

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # pragma: no cover
            pass

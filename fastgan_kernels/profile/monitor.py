"""GpuMonitor: a background NVML sampler with named energy windows.

A thread reads utilisation, memory, power, SM clock, temperature and clock-event
(throttle) reasons every ``interval_s``. ``begin_window(name)`` / ``end_window(name)``
give the time and energy between two points, in the manner of Zeus's ZeusMonitor:
energy is the difference of NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer) read at both edges; where
the counter is missing, the power samples inside the window are integrated
(trapezoids, edges included), and the window says which method gave its joules.
Where neither exists the energy is None: no figure is ever invented.

The source of readings is injectable (``source=``, see nvml_source.GpuSource), and so
is the clock, so the logic is testable without a GPU.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .nvml_source import GpuSource, NvmlSource, NvmlUnavailable, reason_names


@dataclass
class Sample:
    t: float
    gpu_util: Optional[float] = None
    mem_util: Optional[float] = None
    mem_used: Optional[int] = None
    mem_total: Optional[int] = None
    power_w: Optional[float] = None
    sm_clock_mhz: Optional[float] = None
    temperature_c: Optional[float] = None
    reasons: Optional[int] = None
    energy_j: Optional[float] = None     # the driver's cumulative counter, not a per-sample figure


@dataclass
class Window:
    name: str
    start: float
    end: float
    energy_j: Optional[float]
    method: str                          # "energy-counter", "power-integral" or "unavailable"
    stats: dict = field(default_factory=dict)

    @property
    def time_s(self) -> float:
        return self.end - self.start

    @property
    def avg_power_w(self) -> Optional[float]:
        return self.energy_j / self.time_s if self.energy_j is not None and self.time_s > 0 else None


def integrate_power(samples: list[Sample], start: float, end: float) -> Optional[float]:
    """Joules from the power samples in [start, end] by the trapezoid rule (None if fewer than 2)."""
    pts = sorted((s.t, s.power_w) for s in samples if s.power_w is not None and start <= s.t <= end)
    if len(pts) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(pts, pts[1:]))


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _max(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def _min(xs):
    xs = [x for x in xs if x is not None]
    return min(xs) if xs else None


def summarize(samples: list[Sample]) -> dict:
    """Averages and peaks of the samples; readings the GPU never gave stay None."""
    seen: dict[str, int] = {}
    for s in samples:
        for name in reason_names(s.reasons):
            seen[name] = seen.get(name, 0) + 1
    return {
        "samples": len(samples),
        "gpu_util_avg": _mean(s.gpu_util for s in samples),
        "mem_util_avg": _mean(s.mem_util for s in samples),
        "mem_used_peak": _max(s.mem_used for s in samples),
        "mem_total": _max(s.mem_total for s in samples),
        "power_avg_w": _mean(s.power_w for s in samples),
        "power_peak_w": _max(s.power_w for s in samples),
        "sm_clock_avg_mhz": _mean(s.sm_clock_mhz for s in samples),
        "sm_clock_min_mhz": _min(s.sm_clock_mhz for s in samples),
        "sm_clock_max_mhz": _max(s.sm_clock_mhz for s in samples),
        "temperature_max_c": _max(s.temperature_c for s in samples),
        "clock_event_reasons": seen,   # reason -> number of samples it was active in
    }


class GpuMonitor:
    """Samples one GPU in a background thread; measures named time/energy windows."""

    def __init__(self, index: int = 0, interval_s: float = 0.1, source: Optional[GpuSource] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.source = source if source is not None else NvmlSource(index)  # raises NvmlUnavailable
        self.interval_s, self.clock = interval_s, clock
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._open: dict[str, Sample] = {}

    @classmethod
    def create(cls, index: int = 0, interval_s: float = 0.1) -> tuple[Optional["GpuMonitor"], str]:
        """(monitor, "") where NVML works, else (None, why not)."""
        try:
            return cls(index, interval_s), ""
        except NvmlUnavailable as exc:
            return None, str(exc)

    @property
    def device_name(self) -> str:
        return self.source.name()

    def sample_once(self) -> Sample:
        src = self.source
        util, mem = src.utilization(), src.memory()
        s = Sample(t=self.clock(),
                   gpu_util=util[0] if util else None, mem_util=util[1] if util else None,
                   mem_used=mem[0] if mem else None, mem_total=mem[1] if mem else None,
                   power_w=src.power_w(), sm_clock_mhz=src.sm_clock_mhz(), temperature_c=src.temperature_c(),
                   reasons=src.clock_event_reasons(), energy_j=src.total_energy_j())
        with self._lock:
            self.samples.append(s)
        return s

    # ------------------------------------------------------------ background thread
    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval_s)

    def start(self) -> "GpuMonitor":
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="GpuMonitor", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "GpuMonitor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ windows
    def begin_window(self, name: str) -> None:
        if name in self._open:
            raise ValueError(f"window {name!r} is already open")
        self._open[name] = self.sample_once()

    def end_window(self, name: str) -> Window:
        if name not in self._open:
            raise ValueError(f"window {name!r} was never begun")
        first = self._open.pop(name)
        last = self.sample_once()
        with self._lock:
            inside = [s for s in self.samples if first.t <= s.t <= last.t]
        if first.energy_j is not None and last.energy_j is not None:
            energy, method = last.energy_j - first.energy_j, "energy-counter"
        else:
            energy = integrate_power(inside, first.t, last.t)
            method = "power-integral" if energy is not None else "unavailable"
        return Window(name, first.t, last.t, energy, method, summarize(inside))

    def summary(self) -> dict:
        with self._lock:
            return summarize(list(self.samples))

"""The CPU side of a profile: process CPU time, utilisation and peak RSS between two points."""
from __future__ import annotations

import os
import resource
import sys
import time
from typing import Optional


def _machine_times() -> Optional[tuple[float, float]]:
    """(busy, total) jiffies of the whole machine from /proc/stat (None where unreadable)."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


class CpuStats:
    """``start()`` ... ``stop()`` -> wall time, process CPU time and utilisation, machine load, peak RSS."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self._t0 = self._cpu0 = None
        self._machine0 = None

    @staticmethod
    def _cpu_time() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def start(self) -> "CpuStats":
        self._t0, self._cpu0, self._machine0 = self.clock(), self._cpu_time(), _machine_times()
        return self

    def stop(self) -> dict:
        if self._t0 is None:
            raise RuntimeError("CpuStats.stop() before start()")
        wall = self.clock() - self._t0
        cpu = self._cpu_time() - self._cpu0
        ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        out = {
            "wall_s": wall,
            "process_cpu_s": cpu,
            "process_cpu_util_pct": 100.0 * cpu / wall if wall > 0 else None,   # 100 = one core busy
            "cpus": ncpu,
            "peak_rss_mib": peak_rss_mib(),
        }
        m1 = _machine_times()
        if self._machine0 and m1 and m1[1] > self._machine0[1]:
            out["machine_cpu_util_pct"] = 100.0 * (m1[0] - self._machine0[0]) / (m1[1] - self._machine0[1])
        return out

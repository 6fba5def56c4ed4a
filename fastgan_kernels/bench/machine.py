"""What the numbers were measured on: CPU model and flags, GPU, driver, library versions."""
from __future__ import annotations

import os
import platform
from typing import Optional

# CPU flags that decide which code paths the kernels and the peers can take.
ISA_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve", "sve2")


def _cpuinfo() -> tuple[str, list[str]]:
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    return model, flags


def cpu_info() -> dict:
    model, flags = _cpuinfo()
    info = {
        "model": model,
        "arch": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "isa_flags": [f for f in ISA_FLAGS if f in flags],
        "flags": " ".join(flags),
    }
    try:
        info["affinity"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        pass
    try:
        from .. import _ext

        info["fastgan_extension"] = "loaded" if _ext.AVAILABLE else _ext.REASON
        if _ext.AVAILABLE:
            info["fastgan_cpu_features"] = [k for k, v in _ext.cpu_features().items() if v]
            info["fastgan_isa"] = _ext.isa().name
    except Exception as exc:  # pragma: no cover - a broken build must not stop a report
        info["fastgan_extension"] = f"error: {exc}"
    return info


def nvml_driver() -> Optional[str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
            return version.decode() if isinstance(version, bytes) else version
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def gpu_info() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "reason": "torch.cuda.is_available() is False"
                + ("" if torch.version.cuda else " (this torch has no CUDA)")}
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "available": True,
        "count": torch.cuda.device_count(),
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "sm_count": props.multi_processor_count,
        "l2_cache_mib": round(getattr(props, "L2_cache_size", 0) / 2**20, 1),
        "driver": nvml_driver() or "unknown (NVML unavailable)",
        "cuda_runtime": torch.version.cuda,
    }


def versions() -> dict:
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import triton

        out["triton"] = triton.__version__
    except Exception as exc:
        out["triton"] = f"not importable ({type(exc).__name__})"
    try:
        from .. import __version__

        out["fastgan_kernels"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return out


def source_revision() -> Optional[str]:
    """The checkout's commit, with "+dirty" when its tracked files differ from it (None outside git)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def machine_info() -> dict:
    import torch

    return {
        "host_os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_info(),
        "gpu": gpu_info(),
        "versions": versions(),
        "source": source_revision(),
        "torch_threads": torch.get_num_threads(),
    }


def _proc_stat() -> Optional[tuple[float, float]]:
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


def cpu_busy_pct(interval_s: float = 0.5) -> Optional[float]:
    """Share of the machine's CPU time that was busy during ``interval_s`` (None where unknown).

    Measured while this process sleeps, it is the load from everything else: on a shared
    2-core machine, benchmarks taken while it is high are not worth much.
    """
    import time

    a = _proc_stat()
    time.sleep(interval_s)
    b = _proc_stat()
    if not a or not b or b[1] <= a[1]:
        return None
    return round(100.0 * (b[0] - a[0]) / (b[1] - a[1]), 1)


def load_snapshot() -> Optional[tuple[float, float, float]]:
    """(busy CPU seconds of the machine, total CPU seconds, this process's CPU seconds) now."""
    import time

    stat = _proc_stat()
    if not stat:
        return None
    tick = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
    return stat[0] / tick, stat[1] / tick, time.process_time()


def others_busy_pct(start, end) -> Optional[float]:
    """Share of the machine's CPU time that OTHER processes used between two ``load_snapshot()``s.

    Measured while the benchmark runs (its own CPU time, spinning threads included, is taken
    out), so it catches the load that the before / after samples miss.
    """
    if not start or not end or end[1] <= start[1]:
        return None
    others = (end[0] - start[0]) - (end[2] - start[2])
    return round(max(0.0, 100.0 * others / (end[1] - start[1])), 1)


def one_line(info: dict) -> str:
    cpu, gpu, v = info.get("cpu", {}), info.get("gpu", {}), info.get("versions", {})
    gpu_text = f"{gpu.get('name')} (driver {gpu.get('driver')}, CUDA {gpu.get('cuda_runtime')})" \
        if gpu.get("available") else "no GPU"
    return (f"{cpu.get('model')} ({cpu.get('logical_cpus')} CPUs, {info.get('torch_threads')} torch threads; "
            f"{' '.join(cpu.get('isa_flags', []))}); {gpu_text}; torch {v.get('torch')}, triton {v.get('triton')}")

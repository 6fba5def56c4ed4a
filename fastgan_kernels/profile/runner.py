"""Generator inference for a fixed time, measured: images/s, and on a GPU with NVML, energy and clocks.

The loop draws nothing new per step (one latent batch, reused) so that only the
generator is timed. On CUDA the host synchronises every ``SYNC_EVERY`` steps (the
queue stays short) and at the end, and the time runs to that final synchronisation.
GPU figures come only from NVML (profile/monitor.py); where NVML or a GPU is missing
the result says so and carries the CPU side alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from . import models
from .cpu_stats import CpuStats
from .monitor import GpuMonitor

SYNC_EVERY = 8


@dataclass
class ProfileOptions:
    model: str = "seed"
    batch: int = 256
    backend: str = "auto"
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    seconds: float = 10.0
    warmup_s: float = 1.0
    trace: Optional[str] = None
    interval_s: float = 0.1


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is visible to torch")
    return device


def _nvml_status() -> str:
    monitor, reason = GpuMonitor.create()
    if monitor is None:
        return f"unavailable ({reason})"
    name = monitor.device_name
    monitor.source.close()
    return f"sees {name}"


def _write_trace(model, z, device: torch.device, path: str, steps: int = 5) -> None:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            model(z)
        _sync(device)
    prof.export_chrome_trace(path)


def run(options: ProfileOptions) -> dict:
    if options.batch <= 0:
        raise ValueError(f"batch must be positive, got {options.batch}")
    device = _device(options.device)
    model, info = models.build(options.model, options.backend, device, options.dtype)
    result = {"model": info, "batch": options.batch, "device": str(device),
              "dtype": str(options.dtype).replace("torch.", ""), "seconds_asked": options.seconds,
              "torch_threads": torch.get_num_threads()}
    gen = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(options.batch, info["latent_dim"], generator=gen).to(device=device, dtype=options.dtype)

    monitor, why_no_gpu = None, ""
    if device.type != "cuda":
        gpu_part = "device is cpu" if torch.cuda.is_available() else "no CUDA GPU visible to torch"
        why_no_gpu = f"{gpu_part}; NVML: {_nvml_status()}; no GPU power, energy or clock figures"
    else:
        monitor, reason = GpuMonitor.create(device.index or 0, options.interval_s)
        if monitor is None:
            why_no_gpu = f"NVML unavailable ({reason}): no GPU power, energy or clock figures"

    with torch.inference_mode():
        start = time.perf_counter()
        model(z)
        _sync(device)
        result["first_call_s"] = time.perf_counter() - start  # includes compilation / autotuning
        warm_end = time.perf_counter() + options.warmup_s
        while time.perf_counter() < warm_end:
            model(z)
        _sync(device)

        cpu = CpuStats().start()
        if monitor is not None:
            monitor.start()
            monitor.begin_window("inference")
        steps, t0 = 0, time.perf_counter()
        deadline = t0 + options.seconds
        while True:
            model(z)
            steps += 1
            if steps % SYNC_EVERY == 0:
                _sync(device)
            if time.perf_counter() >= deadline:
                break
        _sync(device)
        elapsed = time.perf_counter() - t0
        window = monitor.end_window("inference") if monitor is not None else None
        if monitor is not None:
            monitor.stop()
        result["cpu"] = cpu.stop()

        images = steps * options.batch
        result.update(steps=steps, images=images, elapsed_s=elapsed, images_per_s=images / elapsed)
        if window is None:
            result["gpu"] = {"available": False, "reason": why_no_gpu}
        else:
            stats = window.stats
            result["gpu"] = {
                "available": True, "name": monitor.device_name,
                "energy_j": window.energy_j, "energy_method": window.method, "window_s": window.time_s,
                "images_per_joule": images / window.energy_j if window.energy_j else None,
                "avg_power_w": window.avg_power_w, **stats,
            }
        if options.trace:
            _write_trace(model, z, device, options.trace)
            result["trace"] = options.trace
    return result


def _f(v, spec=".1f", unit=""):
    return "n/a" if v is None else f"{format(v, spec)}{unit}"


def to_text(r: dict) -> str:
    m, cpu, gpu = r["model"], r["cpu"], r["gpu"]
    lines = [
        f"fastgan-kernels profile: {m['model']} generator, batch {r['batch']}, {r['dtype']} on {r['device']}, "
        f"backend {m['backend']}" + (f" (runs {m['resolved_backend']})" if m.get("resolved_backend") else ""),
        f"  variant: {m['variant']}",
        f"  {r['steps']} steps in {r['elapsed_s']:.2f} s (first call {r['first_call_s']:.2f} s, not counted)",
        f"  throughput: {r['images_per_s']:.1f} images/s",
        f"  CPU: process {_f(cpu.get('process_cpu_util_pct'), '.0f', '%')} of one core "
        f"({cpu['cpus']} CPUs, {r['torch_threads']} torch threads), machine "
        f"{_f(cpu.get('machine_cpu_util_pct'), '.0f', '%')} busy, peak RSS {cpu['peak_rss_mib']:.0f} MiB",
    ]
    if not gpu["available"]:
        lines.append(f"  GPU: {gpu['reason']}")
    else:
        reasons = gpu.get("clock_event_reasons") or {}
        throttle = ", ".join(f"{k} ({v}/{gpu['samples']} samples)" for k, v in reasons.items()) or "none"
        lines += [
            f"  GPU: {gpu['name']}, {gpu['samples']} NVML samples",
            f"  energy: {_f(gpu['energy_j'], '.1f', ' J')} ({gpu['energy_method']}), "
            f"{_f(gpu['images_per_joule'], '.1f')} images/J",
            f"  power: average {_f(gpu['avg_power_w'], '.0f', ' W')} (from energy), sampled average "
            f"{_f(gpu['power_avg_w'], '.0f', ' W')}, peak {_f(gpu['power_peak_w'], '.0f', ' W')}",
            f"  SM clock: average {_f(gpu['sm_clock_avg_mhz'], '.0f', ' MHz')} "
            f"(min {_f(gpu['sm_clock_min_mhz'], '.0f')}, max {_f(gpu['sm_clock_max_mhz'], '.0f')}); "
            f"GPU utilisation {_f(gpu['gpu_util_avg'], '.0f', '%')}; max temperature "
            f"{_f(gpu['temperature_max_c'], '.0f', ' C')}; peak memory "
            f"{_f(gpu['mem_used_peak'] / 2**30 if gpu['mem_used_peak'] else None, '.2f', ' GiB')}",
            f"  clock-event (throttle) reasons seen: {throttle}",
        ]
    if r.get("trace"):
        lines.append(f"  Chrome trace: {r['trace']}")
    return "\n".join(lines)


"""Prometheus metrics of the service, in a registry of its own (one per service instance).

Names start with ``fastgan_serve_``. Images/s is the rate of ``images_total`` (what PromQL's
``rate()`` is for) and, for a plain scrape, a gauge over the last ``window_s`` seconds. On a CUDA
device the project's GpuMonitor (NVML) measures each model call's energy window: power, the
energy counter, and joules per image; where NVML is unavailable those series are absent
(never zero) and ``gpu_energy_unavailable`` says why in its ``reason`` label.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  (re-exported for the app)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ERROR_KINDS = ("bad_request", "unauthorized", "rate_limited", "too_large", "unavailable", "model_error",
               "internal")


def _batch_buckets(max_batch: int) -> tuple[float, ...]:
    edges, b = [], 1
    while b < max_batch:
        edges.append(float(b))
        b *= 2
    return tuple(edges) + (float(max_batch),)


class ServiceMetrics:
    def __init__(self, max_batch: int, window_s: float = 10.0):
        r = self.registry = CollectorRegistry(auto_describe=True)
        p = "fastgan_serve_"
        self.request_latency = Histogram(p + "request_latency_seconds", "HTTP request latency by endpoint and status",
                                         ("endpoint", "status"), buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram(p + "queue_wait_seconds", "time a request chunk waited for its batch",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.model_time = Histogram(p + "model_seconds", "time of one model call (one batch)",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(p + "batch_size_images", "images per model call",
                                    buckets=_batch_buckets(max_batch), registry=r)
        self.images = Counter(p + "images", "images generated", registry=r)
        self.images_per_s = Gauge(p + "images_per_second", f"images generated per second over the last {window_s:g} s",
                                  registry=r)
        self.queue_images = Gauge(p + "queue_depth_images", "images waiting for a batch", registry=r)
        self.queue_requests = Gauge(p + "queue_depth_requests", "request chunks waiting for a batch", registry=r)
        self.in_flight = Gauge(p + "requests_in_flight", "generate requests being served", registry=r)
        self.errors = Counter(p + "errors", "failed requests by kind", ("kind",), registry=r)
        for kind in ERROR_KINDS:  # every kind exported from the start, so alert expressions see zeros
            self.errors.labels(kind)
        self.ready = Gauge(p + "ready", "1 when the model is loaded and warmed up", registry=r)
        self.gpu_power = self.gpu_energy = self.energy_per_image = self.gpu_unavailable = None
        self._window_s = window_s
        self._recent: collections.deque = collections.deque()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- per batch
    def observe_batch(self, images: int, seconds: float, now: Optional[float] = None) -> None:
        self.batch_size.observe(images)
        self.model_time.observe(seconds)
        self.images.inc(images)
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent.append((now, images))
            while self._recent and self._recent[0][0] < now - self._window_s:
                self._recent.popleft()
            span = max(now - self._recent[0][0], seconds, 1e-9) if len(self._recent) > 1 else max(seconds, 1e-9)
            self.images_per_s.set(sum(n for _, n in self._recent) / span)

    # ----------------------------------------------------------------- GPU energy
    def enable_gpu(self) -> None:
        p, r = "fastgan_serve_", self.registry
        self.gpu_power = Gauge(p + "gpu_power_watts", "average GPU power over the last model call", registry=r)
        self.gpu_energy = Counter(p + "gpu_energy_joules", "GPU energy spent in model calls", registry=r)
        self.energy_per_image = Histogram(p + "gpu_energy_per_image_joules", "GPU joules per image, per model call",
                                          buckets=(1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0), registry=r)

    def gpu_energy_unavailable(self, reason: str) -> None:
        self.gpu_unavailable = Gauge("fastgan_serve_gpu_energy_unavailable", "1: NVML energy figures are absent",
                                     ("reason",), registry=self.registry)
        self.gpu_unavailable.labels(reason[:200]).set(1)

    def observe_energy(self, joules: float, seconds: float, images: int) -> None:
        if self.gpu_energy is None:
            return
        self.gpu_energy.inc(joules)
        if seconds > 0:
            self.gpu_power.set(joules / seconds)
        if images:
            self.energy_per_image.observe(joules / images)

    def render(self) -> bytes:
        return generate_latest(self.registry)

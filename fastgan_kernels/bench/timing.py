"""How the harness times a callable.

CPU: adaptive repetition. A callable is calibrated to run in *blocks* of several calls
that each last about ``min_run_time / target_blocks`` (so the timer's cost and
resolution vanish), then blocks are run until ``min_run_time`` has been spent and at
least ``min_blocks`` blocks exist. Each block gives one per-call time; the report's
median, p20 and p80 are over blocks. This is the idea of torch.utils.benchmark's
``blocked_autorange``. :class:`AutoRange` exposes one block at a time so that the
runner can interleave the providers of a case (A, B, C, A, B, C, ...): on a shared,
noisy machine a burst of load then hits all of them rather than one.

GPU: CUDA events around every call, with the L2 cache flushed (a buffer larger than
L2 zeroed) before each call, after time-based warm-up, in the manner of
``triton.testing.do_bench``; or, optionally, replay of a CUDA graph holding many calls
(no flush between them: a warm-L2, launch-free figure). ``Measurement.mode`` names
the method and goes into the report.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

CPU_MODE = "cpu-blocked-autorange"
CUDA_EVENTS_MODE = "cuda-events-l2-flush"
CUDA_GRAPH_MODE = "cuda-graph-warm-l2"
# CPU: a call longer than ``max_run_time`` is timed once, by its checked call (see runner.run_case).
CPU_SINGLE_CALL_MODE = "cpu-single-call"


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q``-quantile of ``values`` by linear interpolation between order statistics."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Measurement:
    """Per-call times (seconds) of one callable: one entry per block (CPU) or per call (GPU)."""

    times_s: list[float]
    calls: int
    mode: str
    calls_per_sample: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return quantile(self.times_s, 0.5)

    @property
    def p20(self) -> float:
        return quantile(self.times_s, 0.2)

    @property
    def p80(self) -> float:
        return quantile(self.times_s, 0.8)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(median_s=self.median, p20_s=self.p20, p80_s=self.p80)
        return d


@dataclass
class TimingConfig:
    """Knobs of both timing methods; ``quick()`` is the ``--quick`` set."""

    min_run_time: float = 1.0      # CPU: seconds of timed calls per provider and case
    min_blocks: int = 5            # CPU: at least this many blocks (samples)
    target_blocks: int = 40        # CPU: aim for about this many blocks within min_run_time
    max_run_time: float = 8.0      # CPU: stop adding blocks after this, once 3 blocks exist
    warmup_ms: float = 25.0        # GPU: warm-up time
    rep_ms: float = 100.0          # GPU: timed calls for about this long
    cuda_graph: bool = False       # GPU: replay a CUDA graph instead of per-call events

    @classmethod
    def quick(cls) -> "TimingConfig":
        return cls(min_run_time=0.15, min_blocks=3, target_blocks=15, max_run_time=1.0, warmup_ms=10.0, rep_ms=30.0)


class AutoRange:
    """Adaptive, block-wise timing of one CPU callable; drive it with :meth:`step` until :attr:`done`.

    ``timer`` is injectable so the logic can be tested with a fake clock.
    """

    def __init__(self, fn: Callable[[], object], config: TimingConfig | None = None,
                 timer: Callable[[], float] = time.perf_counter):
        self.fn, self.timer = fn, timer
        self.config = config or TimingConfig()
        self.calls_per_block = 0
        self.samples: list[float] = []
        self.spent = 0.0

    def _time(self, n: int) -> float:
        fn, timer = self.fn, self.timer
        start = timer()
        for _ in range(n):
            fn()
        return timer() - start

    def calibrate(self) -> int:
        """Pick the calls per block from one timed call, then one timed trial block."""
        cfg = self.config
        block_target = max(cfg.min_run_time / max(cfg.target_blocks, 1), 1e-4)
        one = self._time(1)
        n = max(1, min(int(block_target / max(one, 1e-9)), 1_000_000))
        if n > 1:  # a single call is noisy at µs scale: refine from a block of n
            per_call = max(self._time(n) / n, 1e-9)
            n = max(1, min(int(block_target / per_call), 1_000_000))
        else:  # a call longer than a block is a block: keep it as the first sample
            self.samples.append(one)
            self.spent += one
        self.calls_per_block = n
        return n

    @property
    def done(self) -> bool:
        """Enough samples and time; or past ``max_run_time`` (with 3 samples, or 1 when one call exceeds it)."""
        cfg, n = self.config, len(self.samples)
        if n == 0:
            return False
        if self.spent >= cfg.max_run_time:
            return n >= 3 or self.samples[0] >= cfg.max_run_time
        return n >= max(cfg.min_blocks, 1) and self.spent >= cfg.min_run_time

    def step(self) -> float:
        """Run one block; returns its per-call time."""
        if not self.calls_per_block:
            self.calibrate()
        elapsed = self._time(self.calls_per_block)
        self.spent += elapsed
        per_call = elapsed / self.calls_per_block
        self.samples.append(per_call)
        return per_call

    def measurement(self) -> Measurement:
        return Measurement(list(self.samples), len(self.samples) * self.calls_per_block, CPU_MODE,
                           self.calls_per_block)


def cpu_autorange(fn: Callable[[], object], config: TimingConfig | None = None,
                  timer: Callable[[], float] = time.perf_counter) -> Measurement:
    """Time one callable alone (see :class:`AutoRange`)."""
    return interleaved([fn], config, timer)[0]


def interleaved(fns: Sequence[Callable[[], object]], config: TimingConfig | None = None,
                timer: Callable[[], float] = time.perf_counter) -> list[Measurement]:
    """Time several callables block by block in turn (round robin) until each is done."""
    ranges = [AutoRange(fn, config, timer) for fn in fns]
    for r in ranges:
        r.calibrate()
    while not all(r.done for r in ranges):
        for r in ranges:
            if not r.done:
                r.step()
    return [r.measurement() for r in ranges]


# ----------------------------------------------------------------------------- GPU

def _flush_buffer(device):
    import torch

    props = torch.cuda.get_device_properties(device)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    nbytes = max(256 << 20, 2 * l2)
    return torch.empty(nbytes // 4, dtype=torch.int32, device=device)


def cuda_events(fn: Callable[[], object], config: TimingConfig | None = None, device=None) -> Measurement:
    """Per-call CUDA-event times with an L2 flush before every call (after time-based warm-up)."""
    import torch

    cfg = config or TimingConfig()
    device = torch.device(device or "cuda")
    cache = _flush_buffer(device)
    fn()
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        cache.zero_()
        fn()
    end.record()
    torch.cuda.synchronize(device)
    estimate_ms = max(start.elapsed_time(end) / 5, 1e-4)
    n_warmup = max(1, int(cfg.warmup_ms / estimate_ms))
    n_rep = max(10, min(int(cfg.rep_ms / estimate_ms), 2000))
    for _ in range(n_warmup):
        fn()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    for i in range(n_rep):
        cache.zero_()  # the flush runs before the start event: it is not timed
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize(device)
    times = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
    flush_bytes = cache.numel() * cache.element_size()
    del cache
    return Measurement(times, n_rep, CUDA_EVENTS_MODE, 1, {"flush_bytes": flush_bytes})


def cuda_graph(fn: Callable[[], object], config: TimingConfig | None = None, device=None) -> Measurement:
    """Replays of a CUDA graph that holds many calls; per-call time = replay time / calls (warm L2)."""
    import torch

    cfg = config or TimingConfig()
    device = torch.device(device or "cuda")
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):  # capture needs its warm-up on a side stream
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    torch.cuda.synchronize(device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        fn()
    end.record()
    torch.cuda.synchronize(device)
    estimate_ms = max(start.elapsed_time(end) / 5, 1e-4)
    per_graph = max(10, min(int(2.0 / estimate_ms), 500))  # about 2 ms of work per replay
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(per_graph):
            fn()
    torch.cuda.synchronize(device)
    graph.replay()
    n_rep = max(5, min(int(cfg.rep_ms / (estimate_ms * per_graph)), 200))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    for i in range(n_rep):
        starts[i].record()
        graph.replay()
        ends[i].record()
    torch.cuda.synchronize(device)
    times = [s.elapsed_time(e) / 1e3 / per_graph for s, e in zip(starts, ends)]
    del graph
    return Measurement(times, n_rep * per_graph, CUDA_GRAPH_MODE, per_graph)


def measure(fns: Sequence[Callable[[], object]], device_type: str, config: TimingConfig | None = None,
            device=None) -> list[Measurement]:
    """Time the providers of one case: interleaved blocks on the CPU, one after another on the GPU."""
    cfg = config or TimingConfig()
    if device_type == "cuda":
        method = cuda_graph if cfg.cuda_graph else cuda_events
        return [method(fn, cfg, device) for fn in fns]
    return interleaved(fns, cfg)


def mode_for(device_type: str, config: TimingConfig) -> str:
    if device_type == "cuda":
        return CUDA_GRAPH_MODE if config.cuda_graph else CUDA_EVENTS_MODE
    return CPU_MODE


def synchronized_timer() -> float:
    """``time.perf_counter`` after a CUDA synchronise: a round-edge timer for pytest-benchmark on GPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()

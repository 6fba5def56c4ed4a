"""CUDA graphs for the compiled chain: one graph per batch-size bucket.

On a GPU the chain runs as one public op per layer (ops/mlp_chain.py: per_layer); launching
them one by one costs several microseconds each, most of a small request. Each bucket (a power
of two up to ``max_batch``) captures the chain once on static input / output buffers; a call
copies its rows into the bucket's input (the padding rows stay zero), replays the graph and
reads its rows back. Batches above the largest bucket run uncaptured.

The bucket arithmetic and the cache are plain Python and tested on the CPU with an injected
capture function; the capture itself needs a GPU (tests skip it with the reason).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


def buckets(max_batch: int) -> tuple[int, ...]:
    """Powers of two from 1 to the first one >= max_batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    out, b = [], 1
    while True:
        out.append(b)
        if b >= max_batch:
            return tuple(out)
        b *= 2


def bucket_for(batch: int, sizes: tuple[int, ...]) -> Optional[int]:
    """The smallest bucket holding ``batch`` rows, or None (run uncaptured)."""
    for b in sizes:
        if b >= batch:
            return b
    return None


class _Captured:
    """A captured chain for one bucket: static input / output and the replay function."""

    def __init__(self, x_static: Tensor, y_static: Tensor, replay: Callable[[], None]):
        self.x, self.y, self.replay = x_static, y_static, replay


def capture_cuda(run: Callable[[Tensor], Tensor], x_static: Tensor) -> _Captured:
    """Capture ``run(x_static)`` in a CUDA graph (warm-up on a side stream first, as CUDA requires)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            run(x_static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y_static = run(x_static)
    return _Captured(x_static, y_static, graph.replay)


class GraphCache:
    """One captured chain per bucket, made on first use."""

    def __init__(self, run: Callable[[Tensor], Tensor], width: int, max_batch: int = 1024,
                 capture: Callable[[Callable[[Tensor], Tensor], Tensor], _Captured] = capture_cuda):
        self.run, self.width, self.sizes, self.capture = run, width, buckets(max_batch), capture
        self.graphs: dict[tuple[int, torch.device], _Captured] = {}

    def __call__(self, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        m = x.shape[0]
        b = bucket_for(m, self.sizes)
        if b is None or m == 0:
            y = self.run(x)
            return y if out is None else out.copy_(y)
        key = (b, x.device)
        g = self.graphs.get(key)
        if g is None:
            g = self.graphs[key] = self.capture(self.run, x.new_zeros((b, self.width)))
        g.x[:m].copy_(x)
        g.replay()
        if out is not None:
            return out.copy_(g.y[:m])
        return g.y[:m].clone()  # the static output is overwritten by the next replay

"""Dynamic batching: concurrent requests become one model call, and its output is split back.

A request's latents are drawn before it is queued (so a seeded request gives the same
images however it is batched) and cut into chunks of at most ``max_batch`` images. One
collector task forms a batch: it takes the first waiting chunk, then keeps taking chunks
while they fit under ``max_batch`` images, until the batch is full or ``max_wait_ms`` has
passed *since the first chunk was queued* (a chunk that already waited while the previous
batch ran is not made to wait again). It waits for more only while the service reports
requests on their way to the queue (``arriving``: parsed, not yet queued); with none, the
batch goes at once, so a lone client pays no ``max_wait_ms`` (measured: the fixed 5 ms wait
cut a single closed-loop client's throughput 3.5x on the seed generator). The batch runs in one call on a single worker thread,
off the event loop, and while it runs the next one queues up, so under load batches grow
by themselves. With batching off every chunk is its own call (same worker, same queue):
the baseline the load test compares against.

A batch that raises fails the futures of its own chunks only; the collector carries on.
``drain()`` stops new submissions and returns once the queue is empty and nothing runs.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch


class Draining(RuntimeError):
    """The service is shutting down and takes no new work."""


class QueueFull(RuntimeError):
    """More images are waiting than the service allows."""


@dataclass
class Chunk:
    z: torch.Tensor
    labels: Optional[torch.Tensor]
    future: asyncio.Future
    queued_at: float
    inject_failure: bool = False
    batch_images: int = 0           # filled in when it runs: the size of its batch
    wait_s: float = 0.0
    model_s: float = 0.0

    @property
    def n(self) -> int:
        return int(self.z.shape[0])


@dataclass
class Result:
    images: torch.Tensor            # [n, C, H, W] float32 on the CPU
    queue_wait_s: float             # the longest wait among the request's chunks
    model_s: float                  # the model time of the batches it rode in (summed)
    batch_sizes: list = field(default_factory=list)


# (z, labels, inject_failure) -> images; called in the worker thread.
RunBatch = Callable[[torch.Tensor, Optional[torch.Tensor], bool], torch.Tensor]


class DynamicBatcher:
    def __init__(self, run_batch: RunBatch, max_batch: int = 32, max_wait_ms: float = 5.0, batching: bool = True,
                 metrics=None, max_queue_images: int = 4096, arriving: Optional[Callable[[], int]] = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_ms / 1e3
        self.batching, self.metrics, self.max_queue_images = batching, metrics, max_queue_images
        # How many requests are inside the service but not queued yet (None: unknown, always wait).
        self.arriving = arriving
        # One worker: the model is one set of weights and torch already spreads a call over the cores.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fastgan-model")
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._held: Optional[Chunk] = None      # taken from the queue but did not fit the last batch
        self._queued_images = 0
        self._running = False
        self._draining = False

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="fastgan-batcher")

    async def drain(self) -> None:
        """Take no new work; finish everything queued and running, then stop the collector."""
        self._draining = True
        while self._queued_images or self._running or self._held is not None:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def queued_images(self) -> int:
        return self._queued_images

    async def run_alone(self, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """One call on the worker thread outside the queue and the metrics (the warm-up)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run_batch, z, labels, False)

    # ----------------------------------------------------------------- submit
    async def submit(self, z: torch.Tensor, labels: Optional[torch.Tensor], inject_failure: bool = False) -> Result:
        """Queue a request's latents; returns its images once every chunk has run (raises if a batch failed)."""
        if self._draining:
            raise Draining("the service is shutting down")
        n = int(z.shape[0])
        if self._queued_images + n > self.max_queue_images:
            raise QueueFull(f"{self._queued_images} images are already waiting (limit {self.max_queue_images})")
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        chunks = []
        for i in range(0, n, self.max_batch):
            c = Chunk(z[i:i + self.max_batch], None if labels is None else labels[i:i + self.max_batch],
                      loop.create_future(), now, inject_failure)
            chunks.append(c)
            self._queued_images += c.n
            self._queue.put_nowait(c)
        self._gauge()
        # A request cancelled here (client gone) leaves its chunks to run; their results are dropped.
        outs = await asyncio.gather(*(c.future for c in chunks))
        return Result(torch.cat(outs) if len(outs) > 1 else outs[0], max(c.wait_s for c in chunks),
                      sum(c.model_s for c in chunks), [c.batch_images for c in chunks])

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_images.set(self._queued_images)
            self.metrics.queue_requests.set(self._queue.qsize() + (self._held is not None))

    # ----------------------------------------------------------------- collector
    async def _next(self, timeout: Optional[float]) -> Optional[Chunk]:
        if self._held is not None:
            c, self._held = self._held, None
            return c
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _form_batch(self) -> list[Chunk]:
        first = await self._next(None)
        batch, images = [first], first.n
        if not self.batching:
            return batch
        deadline = first.queued_at + self.max_wait_s
        while images < self.max_batch:
            # Take what is queued; wait (until the deadline) only while more requests are on their way:
            # a lone client is not made to wait for company that is not coming.
            expecting = self.arriving is None or self.arriving() > 0
            c = await self._next(deadline - time.perf_counter() if expecting else 0.0)
            if c is None:
                break
            if images + c.n > self.max_batch:  # does not fit: first in line for the next batch
                self._held = c
                break
            batch.append(c)
            images += c.n
        return batch

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._form_batch()
            self._running = True
            try:
                await self._run(loop, batch)
            finally:
                self._running = False

    async def _run(self, loop, batch: list[Chunk]) -> None:
        start = time.perf_counter()
        images = sum(c.n for c in batch)
        self._queued_images -= images
        self._gauge()
        for c in batch:
            c.wait_s, c.batch_images = start - c.queued_at, images
            if self.metrics is not None:
                self.metrics.queue_wait.observe(c.wait_s)
        z = torch.cat([c.z for c in batch]) if len(batch) > 1 else batch[0].z
        labels = None
        if batch[0].labels is not None:
            labels = torch.cat([c.labels for c in batch]) if len(batch) > 1 else batch[0].labels
        fail = any(c.inject_failure for c in batch)
        try:
            out = await loop.run_in_executor(self._executor, self.run_batch, z, labels, fail)
        except Exception as exc:  # this batch's requests fail; the service keeps serving
            for c in batch:
                if not c.future.done():
                    c.future.set_exception(exc)
            return
        took = time.perf_counter() - start
        if self.metrics is not None:
            self.metrics.observe_batch(images, took)
        offset = 0
        for c in batch:
            c.model_s = took
            if not c.future.done():  # done = the request was cancelled (client went away)
                c.future.set_result(out[offset:offset + c.n])
            offset += c.n

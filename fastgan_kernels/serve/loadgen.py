"""An async HTTP load generator for the service: closed loop, bounded in requests and time, loopback only.

``concurrency`` workers each send ``POST /v1/generate`` back to back (the next request leaves
when the last answer arrived) until ``max_requests`` were sent or ``max_seconds`` passed.
Every answer's latency, status and the server's timing headers (``X-Queue-Ms``,
``X-Model-Ms``, ``X-Batch-Sizes``) are kept, so a run reports requests/s, images/s,
p50/p90/p99 latency, the batch sizes the server formed, and where a request's time went:
queue wait, model call, and the rest (HTTP, parsing, encoding, the client itself).

aiohttp rather than httpx here: on a 2-core machine the client shares the cores with the
server, and aiohttp spends less CPU per request.
"""
from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import asdict, dataclass, field
from typing import Optional
from urllib.parse import urlparse

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass
class LoadResult:
    concurrency: int
    n: int
    requests: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0
    latencies_s: list = field(default_factory=list, repr=False)
    queue_ms: list = field(default_factory=list, repr=False)
    model_ms: list = field(default_factory=list, repr=False)
    batch_sizes: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)

    @property
    def requests_per_s(self) -> float:
        return (self.requests - self.failed) / self.seconds if self.seconds else 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    def quantile_ms(self, q: float) -> Optional[float]:
        xs = sorted(self.latencies_s)
        if not xs:
            return None
        i = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
        return 1e3 * xs[i]

    def breakdown_ms(self) -> dict:
        """Mean per request: total latency, queue wait, model call, and the rest (HTTP and handling)."""
        if not self.queue_ms:
            return {}
        k = len(self.queue_ms)
        total = 1e3 * sum(self.latencies_s) / len(self.latencies_s)
        queue, model = sum(self.queue_ms) / k, sum(self.model_ms) / k
        return {"total": total, "queue": queue, "model": model, "http_and_handling": max(0.0, total - queue - model)}

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("latencies_s", "queue_ms", "model_ms")}
        d.update(batch_sizes=dict(sorted(self.batch_sizes.items())), errors=dict(self.errors),
                 requests_per_s=self.requests_per_s, images_per_s=self.images_per_s,
                 p50_ms=self.quantile_ms(0.5), p90_ms=self.quantile_ms(0.9), p99_ms=self.quantile_ms(0.99),
                 breakdown_ms=self.breakdown_ms())
        return d


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


async def run_load(url: str, concurrency: int, n: int = 1, max_requests: int = 200, max_seconds: float = 5.0,
                   fmt: str = "npy", headers: Optional[dict] = None) -> LoadResult:
    """Drive ``url`` (the server's base URL) with ``concurrency`` closed-loop clients."""
    import aiohttp

    check_loopback(url)
    if concurrency < 1 or n < 1 or max_requests < 1 or max_seconds <= 0:
        raise ValueError("concurrency, n and max_requests must be >= 1 and max_seconds > 0")
    result = LoadResult(concurrency, n)
    sent = 0
    endpoint = url.rstrip("/") + "/v1/generate"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=max(60.0, 4 * max_seconds))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers or {}) as session:
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker(wid: int) -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                seed = wid * 1_000_003 + sent
                t0 = time.perf_counter()
                try:
                    async with session.post(endpoint, json={"n": n, "seed": seed, "format": fmt}) as r:
                        await r.read()
                        status, h = r.status, r.headers
                except Exception as exc:  # a connection error is a failed request, not a crashed run
                    result.requests += 1
                    result.failed += 1
                    result.errors[type(exc).__name__] += 1
                    continue
                result.latencies_s.append(time.perf_counter() - t0)
                result.requests += 1
                if status != 200:
                    result.failed += 1
                    result.errors[str(status)] += 1
                    continue
                result.images += n
                result.queue_ms.append(float(h.get("X-Queue-Ms", "nan")))
                result.model_ms.append(float(h.get("X-Model-Ms", "nan")))
                for b in h.get("X-Batch-Sizes", "").split(","):
                    if b:
                        result.batch_sizes[int(b)] += 1

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        result.seconds = time.perf_counter() - start
    return result


def load(url: str, concurrency: int, n: int = 1, max_requests: int = 200, max_seconds: float = 5.0,
         fmt: str = "npy", headers: Optional[dict] = None) -> LoadResult:
    """:func:`run_load` from synchronous code."""
    return asyncio.run(run_load(url, concurrency, n, max_requests, max_seconds, fmt, headers))

"""SIGTERM with requests in flight: every one of them is answered, then the process exits 0."""
import asyncio
import io
import signal
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from fastgan_kernels.serve.checkpoints import write_compressed  # noqa: E402
from fastgan_kernels.serve.process import ServerProcess  # noqa: E402

REQUESTS, DELAY_MS, MAX_BATCH = 12, 150, 4


def test_sigterm_drains_queued_and_running_requests(tmp_path):
    path = str(tmp_path / "g.pt")
    write_compressed(path, "tiny", int8=False, prune=0.5)  # BSR block-sparse layers
    # Every model call sleeps DELAY_MS (test hook): 12 requests in batches of 4 take >= 3 calls.
    srv = ServerProcess(["--checkpoint", path, "--max-batch", str(MAX_BATCH), "--max-wait-ms", "1"],
                        env={"FASTGAN_SERVE_TEST_HOOKS": "1", "FASTGAN_SERVE_TEST_DELAY_MS": str(DELAY_MS)})
    srv.start()
    try:
        async def scenario():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as ac:
                tasks = [asyncio.create_task(ac.post("/v1/generate", json={"n": 1, "seed": i, "format": "npy"}))
                         for i in range(REQUESTS)]
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:  # wait until the server holds every request
                    text = (await ac.get("/metrics")).text
                    line = next(x for x in text.splitlines() if x.startswith("fastgan_serve_requests_in_flight "))
                    if float(line.split()[1]) >= REQUESTS:
                        break
                    await asyncio.sleep(0.02)
                srv.proc.send_signal(signal.SIGTERM)  # SIGTERM while most requests are still queued
                sent = time.monotonic()
                replies = await asyncio.gather(*tasks, return_exceptions=True)
                return replies, time.monotonic() - sent

        replies, drain_s = asyncio.run(scenario())
        code = srv.proc.wait(30)
    finally:
        srv.kill()
    failures = [r for r in replies if not isinstance(r, httpx.Response) or r.status_code != 200]
    assert not failures, failures
    for r in replies:
        assert np.load(io.BytesIO(r.content)).shape == (1, 1, 8, 8)
    assert drain_s >= 2 * DELAY_MS / 1e3  # the queue really was drained after the signal, not before
    assert code == 0, srv.log()

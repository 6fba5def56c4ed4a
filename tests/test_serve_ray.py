"""`fastgan-kernels serve --ray`: the same handler as a Ray Serve deployment on a local Ray instance.

Opt-in: ``FASTGAN_TEST_RAY=1 pytest tests/test_serve_ray.py`` with the `ray` extra installed. It
starts a local Ray instance: 42 s on the shared 2-core machine at load average ~6, 120 s at ~14,
too close to or over the ~90 s a default CI run allows one test, and the `ray` extra (not in
`all`) is a large install. One replica: the point is the handler and @serve.batch inside Ray.
"""
import os

import asyncio
import io

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("ray.serve")

from fastgan_kernels.serve.checkpoints import write_compressed  # noqa: E402
from fastgan_kernels.serve.process import ServerProcess  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.environ.get("FASTGAN_TEST_RAY") != "1",
                                 reason="opt-in (a local Ray instance takes ~2 min here): set FASTGAN_TEST_RAY=1")]


def test_ray_serve_deployment_generates_batches_and_errors_like_the_service(tmp_path):
    path = str(tmp_path / "g.pt")
    write_compressed(path, "tiny", int8=True, conditional=True)
    args = ["--checkpoint", path, "--ray", "--ray-max-replicas", "1", "--max-batch", "8", "--max-wait-ms", "50",
            "--max-n", "32"]
    with ServerProcess(args, env={"FASTGAN_SERVE_TEST_HOOKS": "1"}, ready_timeout_s=240) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            info = c.get("/v1/model").json()
            assert info["engine"] == "ray-serve" and info["conditional"] is True
            a = c.post("/v1/generate", json={"n": 5, "seed": 3, "labels": [2], "format": "npy"})
            b = c.post("/v1/generate", json={"n": 5, "seed": 3, "labels": [2], "format": "npy"})
            assert a.status_code == 200, a.text
            x = np.load(io.BytesIO(a.content))
            assert x.shape == (5, 1, 8, 8) and np.array_equal(x, np.load(io.BytesIO(b.content)))
            assert a.headers["x-labels"] == "2,2,2,2,2"
            big = c.post("/v1/generate", json={"n": 20, "format": "npy"})
            assert big.headers["x-batch-sizes"].split(",")[0] == "8"  # split at --max-batch images
            r = c.post("/v1/generate", json={"n": 99})
            assert r.status_code == 400 and "over the limit of 32" in r.json()["error"]["message"]
            r = c.post("/v1/generate", json={"n": 1}, headers={"X-Test-Fail-Batch": "1"})
            assert r.status_code == 500 and r.json()["error"]["kind"] == "model_error"
            assert c.post("/v1/generate", json={"n": 1, "format": "npy"}).status_code == 200

            async def burst():
                async with httpx.AsyncClient(base_url=srv.url, timeout=60) as ac:
                    return await asyncio.gather(*(ac.post("/v1/generate", json={"n": 1, "format": "npy"})
                                                  for _ in range(16)))

            replies = asyncio.run(burst())
            assert all(r.status_code == 200 for r in replies)
            assert max(int(r.headers["x-batch-sizes"]) for r in replies) > 1  # @serve.batch gathered them
            assert "fastgan_serve_images_total" in c.get("/metrics").text

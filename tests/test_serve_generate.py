"""`fastgan-kernels serve` as a real process on a loopback port, called over HTTP (httpx).

One server for the module: a conditional generator, converted (50% block pruning + int8),
batching at most 16 images / 50 ms, with the test hooks on (a header fails its batch; every
model call takes 20 ms more).
"""
import asyncio
import base64
import io

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
from PIL import Image  # noqa: E402

from fastgan_kernels.serve.checkpoints import write_compressed  # noqa: E402
from fastgan_kernels.serve.process import ServerProcess  # noqa: E402

MAX_BATCH = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("serve") / "g_cond.pt")
    write_compressed(path, "tiny", int8=True, prune=0.5, conditional=True, num_classes=10)
    args = ["--checkpoint", path, "--max-batch", str(MAX_BATCH), "--max-wait-ms", "50", "--max-n", "64",
            "--max-body-bytes", "512"]
    # Each model call sleeps 20 ms (test hook), so concurrent requests meet in the queue on any machine.
    with ServerProcess(args, env={"FASTGAN_SERVE_TEST_HOOKS": "1", "FASTGAN_SERVE_TEST_DELAY_MS": "20"}) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield srv, client


def npy(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(response.content))


def error_of(response, status: int, words: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and words in body["error"]["message"], body
    assert "Traceback" not in response.text
    return body["error"]


def test_health_ready_and_model_description(server):
    _, c = server
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json()["ready"] is True
    info = c.get("/v1/model").json()
    assert info["conditional"] is True and info["num_classes"] == 10 and info["image_shape"] == [1, 8, 8]
    # 50% is above the int8 break-even sparsity (convert/prune.py): the layers stay sparse in int8
    assert [layer["format"] for layer in info["layers"]] == ["bsr_int8"] * 3
    assert all(0.25 <= layer["sparsity"] <= 0.75 for layer in info["layers"])
    assert info["compression"]["prune"]["sparsity"] == pytest.approx(0.5, abs=0.05)
    assert info["psnr_db_vs_uncompressed"] > 5 and set(info["formats"]) == {"png", "png_list", "npy"}
    assert info["runner"] in ("converted", "compile_generator") and info["runner_note"]
    assert info["batching"] == {"enabled": True, "max_batch": MAX_BATCH, "max_wait_ms": 50.0}


def test_npy_shapes_seed_reproducible_and_labels(server):
    _, c = server
    a = c.post("/v1/generate", json={"n": 5, "seed": 7, "format": "npy", "labels": [3, 4]})
    b = c.post("/v1/generate", json={"n": 5, "seed": 7, "format": "npy", "labels": [3, 4]})
    other = c.post("/v1/generate", json={"n": 5, "seed": 8, "format": "npy", "labels": [3, 4]})
    x, y, z = npy(a), npy(b), npy(other)
    assert x.shape == (5, 1, 8, 8) and x.dtype == np.float32 and np.abs(x).max() <= 1.0
    assert np.array_equal(x, y) and not np.array_equal(x, z)
    assert a.headers["x-seed"] == "7" and a.headers["x-labels"] == "3,4,3,4,3"
    unseeded = c.post("/v1/generate", json={"n": 2, "format": "npy"})
    seed = int(unseeded.headers["x-seed"])  # drawn by the server, returned so the images can be made again
    again = c.post("/v1/generate", json={"n": 2, "format": "npy", "seed": seed})
    assert np.array_equal(npy(unseeded), npy(again))
    assert unseeded.headers["x-labels"] == "0,1"  # default labels cycle over the classes


def test_truncation_is_reproducible_and_changes_the_images(server):
    _, c = server
    t1 = npy(c.post("/v1/generate", json={"n": 4, "seed": 3, "format": "npy", "truncation": 0.5}))
    t2 = npy(c.post("/v1/generate", json={"n": 4, "seed": 3, "format": "npy", "truncation": 0.5}))
    plain = npy(c.post("/v1/generate", json={"n": 4, "seed": 3, "format": "npy"}))
    assert np.array_equal(t1, t2) and not np.array_equal(t1, plain)


def test_png_grid_and_png_list(server):
    _, c = server
    r = c.post("/v1/generate", json={"n": 6, "seed": 1, "format": "png", "nrow": 3, "scale": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (3 * (16 + 1) + 1, 2 * (16 + 1) + 1) and img.mode == "L"
    r = c.post("/v1/generate", json={"n": 3, "seed": 1, "format": "png_list"})
    body = r.json()
    assert len(body["images"]) == 3 and body["shape"] == [1, 8, 8] and body["labels"] == [0, 1, 2]
    tiles = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s)))) for s in body["images"]]
    assert all(t.shape == (8, 8) for t in tiles)
    ref = npy(c.post("/v1/generate", json={"n": 3, "seed": 1, "format": "npy"}))
    want = np.round((np.clip(ref[0, 0], -1, 1) + 1) * 127.5)
    assert np.abs(tiles[0].astype(float) - want).max() <= 1  # the same image, as uint8


def test_concurrent_requests_share_batches_and_large_ones_are_split(server):
    srv, _ = server

    async def burst():
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as ac:
            return await asyncio.gather(*(ac.post("/v1/generate", json={"n": 1, "seed": i, "format": "npy"})
                                          for i in range(12)))

    replies = asyncio.run(burst())
    assert all(r.status_code == 200 for r in replies)
    sizes = [int(r.headers["x-batch-sizes"]) for r in replies]
    assert max(sizes) > 1 and max(sizes) <= MAX_BATCH, sizes
    # Batched or not, a seeded image is the same.
    _, c = server
    alone = npy(c.post("/v1/generate", json={"n": 1, "seed": 5, "format": "npy"}))
    assert np.allclose(npy(replies[5]), alone, atol=1e-5)
    big = c.post("/v1/generate", json={"n": 40, "seed": 2, "format": "npy"})
    assert npy(big).shape == (40, 1, 8, 8)
    assert big.headers["x-batch-sizes"] == "16,16,8"


@pytest.mark.parametrize("payload, words", [
    ({"n": 0}, "n: Input should be greater than or equal to 1"),
    ({"n": 65}, "over the limit of 64"),
    ({"n": "3"}, "n: Input should be a valid integer"),
    ({"n": 1, "format": "gif"}, "format"),
    ({"n": 1, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"n": 2, "labels": [1, 2, 3]}, "3 labels for n=2"),
    ({"n": 2, "labels": [10]}, "must be in [0, 10)"),
    ({"n": 2, "labels": []}, "labels"),
    ({"n": 1, "truncation": 0}, "truncation"),
    ({"n": 1, "seed": -1}, "seed"),
])
def test_bad_requests_are_400_with_a_clear_message(server, payload, words):
    _, c = server
    assert error_of(c.post("/v1/generate", json=payload), 400, words)["kind"] == "bad_request"


def test_malformed_oversized_and_unknown(server):
    _, c = server
    error_of(c.post("/v1/generate", content=b"{not json"), 400, "not valid JSON")
    error_of(c.post("/v1/generate", content=b"[1, 2]"), 400, "JSON object")
    big = b'{"n": 1, "labels": [' + b"1, " * 300 + b'1]}'
    assert error_of(c.post("/v1/generate", content=big), 413, "the limit is 512")["kind"] == "too_large"
    chunked = c.post("/v1/generate", content=iter([big[:300], big[300:]]))  # no Content-Length: counted as read
    error_of(chunked, 413, "over the limit of 512 bytes")
    assert error_of(c.get("/v1/nothing"), 404, "Not Found")["kind"] == "not_found"
    assert c.get("/v1/generate").status_code == 405


def test_a_failing_batch_fails_its_requests_and_the_service_goes_on(server):
    _, c = server
    r = c.post("/v1/generate", json={"n": 2}, headers={"X-Test-Fail-Batch": "1"})
    assert error_of(r, 500, "injected failure")["kind"] == "model_error"
    assert npy(c.post("/v1/generate", json={"n": 2, "format": "npy"})).shape == (2, 1, 8, 8)


def test_metrics_after_traffic(server):
    _, c = server
    c.post("/v1/generate", json={"n": 3, "format": "npy"})
    text = c.get("/metrics").text
    for needle in ('fastgan_serve_request_latency_seconds_bucket{endpoint="/v1/generate",le="0.1",status="200"}',
                   'fastgan_serve_request_latency_seconds_count{endpoint="/v1/generate",status="400"}',
                   "fastgan_serve_queue_wait_seconds_count", "fastgan_serve_batch_size_images_bucket",
                   "fastgan_serve_images_per_second", "fastgan_serve_queue_depth_images 0.0",
                   'fastgan_serve_errors_total{kind="model_error"}', "fastgan_serve_ready 1.0"):
        assert needle in text, needle
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    assert values["fastgan_serve_images_total"] >= 3
    assert values['fastgan_serve_errors_total{kind="bad_request"}'] >= 1
    assert values['fastgan_serve_errors_total{kind="model_error"}'] >= 1
    assert values["fastgan_serve_batch_size_images_sum"] >= values["fastgan_serve_batch_size_images_count"] >= 1

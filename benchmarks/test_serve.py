"""serve: the HTTP service under load, through pytest-benchmark (``pytest benchmarks -k serve --benchmark-only``).

The same grid as ``fastgan-kernels bench --suite serve`` (seed and wide G, int8; batching on
and off; concurrency 1, 8, 32; n = 1 and 16; ``--fastgan-quick``: concurrency 1 and 32 at
n = 1): each test is one bounded load run (one pedantic round) against a real server on
loopback; requests/s, images/s, p50/p90/p99, batch sizes and the time breakdown go into
``extra_info``, and a run with a failed request fails the test.
"""
import os

import pytest

pytest.importorskip("aiohttp")
pytest.importorskip("fastapi")

from fastgan_kernels.bench.suites.serve import GRIDS, MODELS, _serve_args  # noqa: E402
from fastgan_kernels.serve.checkpoints import write_compressed  # noqa: E402
from fastgan_kernels.serve.loadgen import load  # noqa: E402
from fastgan_kernels.serve.process import ServerProcess  # noqa: E402

FULL = GRIDS["default"]
CASES = [(m, b, c, n) for m in MODELS for c in FULL[0] for n in FULL[1] for b in (True, False)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(model, batching) -> a running server, started on first use, all stopped at the end."""
    folder, running = tmp_path_factory.mktemp("serve-bench"), {}

    def get(model, batching):
        if (model, batching) not in running:
            path = os.path.join(folder, f"{model}_int8.pt")
            if not os.path.exists(path):
                write_compressed(path, model, int8=True)
            srv = running[model, batching] = ServerProcess(_serve_args(path, batching, "cpu")).start()
            load(srv.url, 8, 1, max_requests=200, max_seconds=0.5)  # warm-up
        return running[model, batching]

    yield get
    for srv in running.values():
        srv.terminate()


@pytest.mark.parametrize("model, batching, concurrency, n", CASES,
                         ids=[f"{m}-{'batched' if b else 'unbatched'}-c{c}-n{n}" for m, b, c, n in CASES])
def test_serve(benchmark, servers, request, model, batching, concurrency, n):
    quick = request.config.getoption("--fastgan-quick") or request.config.getoption("--fastgan-cases") == "quick"
    if quick and (n != 1 or concurrency not in GRIDS["quick"][0]):
        pytest.skip("not in the quick grid")
    _, _, seconds, max_requests = GRIDS["quick" if quick else "default"]
    srv = servers(model, batching)
    benchmark.group = f"serve-{model}-c{concurrency}-n{n}"
    result = benchmark.pedantic(load, args=(srv.url, concurrency, n), rounds=1, iterations=1,
                                kwargs={"max_requests": max_requests, "max_seconds": seconds})
    summary = result.summary()
    benchmark.extra_info.update({k: summary[k] for k in ("requests", "failed", "requests_per_s", "images_per_s",
                                                         "p50_ms", "p90_ms", "p99_ms", "batch_sizes",
                                                         "breakdown_ms")})
    assert result.failed == 0, summary["errors"]

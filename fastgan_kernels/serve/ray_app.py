"""The same handler as a Ray Serve deployment, for users who outgrow one machine.

    fastgan-kernels serve --checkpoint g.pt --ray --ray-max-replicas 4 [--ray-address auto]

Each replica loads the generator and answers through :class:`~.service.GeneratorService` (the
code behind the one-process service: same validation, keys, limits, formats, errors). Batching
is Ray's ``@serve.batch``, sized in images (``batch_size_fn``) so ``--max-batch`` means the same
thing as in the one-process service, and the model call runs in a thread off the replica's
event loop. ``autoscaling_config`` scales the replicas on ongoing requests per replica
(``--ray-target-ongoing``) between ``--ray-min-replicas`` and ``--ray-max-replicas``.

Differences from the one-process service: ``X-Queue-Ms`` is 0 (Ray's queue is not visible to
the replica), ``--no-batching`` is refused, ``/metrics`` answers from whichever replica the
proxy picks (each replica keeps its own registry; scrape Ray's own metrics for the cluster
view), and TLS belongs in front of Ray's HTTP proxy (``--ssl-*`` is refused with ``--ray``).
SIGTERM / SIGINT: ``serve.shutdown()``, which lets replicas finish their requests, then exit.
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import threading
from typing import Optional

import torch

from .batching import Result
from .config import ServeConfig

DEPLOYMENT = "fastgan-generator"
TEST_ENV = ("FASTGAN_SERVE_TEST_HOOKS", "FASTGAN_SERVE_TEST_DELAY_MS")


def _images(items) -> int:
    return sum(int(item[0].shape[0]) for item in items)


def deployment(config: ServeConfig, min_replicas: int = 1, max_replicas: int = 2, target_ongoing: float = 16.0,
               cpus_per_replica: float = 1.0):
    """The bound Ray Serve application for ``config`` (pass it to ``serve.run``)."""
    from ray import serve
    from starlette.responses import Response

    env = {k: os.environ[k] for k in TEST_ENV if k in os.environ}

    @serve.deployment(
        name=DEPLOYMENT,
        autoscaling_config={"min_replicas": min_replicas, "max_replicas": max_replicas,
                            "target_ongoing_requests": target_ongoing},
        max_ongoing_requests=max(4 * config.max_batch, int(2 * target_ongoing)),
        ray_actor_options={"num_cpus": cpus_per_replica, "runtime_env": {"env_vars": env}},
    )
    class GeneratorDeployment:
        def __init__(self, fields: dict):
            from .metrics import ServiceMetrics
            from .model import BatchRunner, load
            from .service import GeneratorService

            cfg = ServeConfig(**fields)
            model = load(cfg.checkpoint, cfg.device, cfg.runner)
            self.metrics = ServiceMetrics(cfg.max_batch)
            self.runner = BatchRunner(model, self.metrics, cfg.threads)
            self.service = GeneratorService(model, cfg, self.metrics)
            self.max_batch = cfg.max_batch
            self._batch.set_max_batch_size(cfg.max_batch)
            self._batch.set_batch_wait_timeout_s(cfg.max_wait_ms / 1e3)
            z = torch.randn(min(cfg.max_batch, 32), model.latent_dim)
            self.runner(z, torch.arange(z.shape[0]) % model.num_classes if model.conditional else None)  # warm-up
            self.service.ready = True
            self.metrics.ready.set(1)

        @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=_images)
        async def _batch(self, items: list) -> list:
            """items: (z, labels, inject_failure) chunks -> their images, one model call for all."""
            z = torch.cat([it[0] for it in items])
            labels = None if items[0][1] is None else torch.cat([it[1] for it in items])
            start = asyncio.get_running_loop().time()
            out = await asyncio.to_thread(self.runner, z, labels, any(it[2] for it in items))
            took = asyncio.get_running_loop().time() - start
            self.metrics.observe_batch(z.shape[0], took)
            results, offset = [], 0
            for it in items:
                k = int(it[0].shape[0])
                results.append((out[offset:offset + k], z.shape[0], took))
                offset += k
            return results

        async def submit(self, z: torch.Tensor, labels: Optional[torch.Tensor], fail: bool) -> Result:
            step = self.max_batch  # like the one-process batcher: no chunk larger than a batch
            parts = [(z[i:i + step], None if labels is None else labels[i:i + step], fail)
                     for i in range(0, z.shape[0], step)]
            outs = await asyncio.gather(*(self._batch(p) for p in parts))
            return Result(torch.cat([o[0] for o in outs]), 0.0, sum(o[2] for o in outs), [o[1] for o in outs])

        async def __call__(self, request) -> Response:
            from .metrics import CONTENT_TYPE_LATEST
            from .service import ApiError, error_reply, json_reply

            path, method = request.url.path.rstrip("/") or "/", request.method
            client = request.client.host if request.client else "?"
            if path == "/v1/generate" and method == "POST":
                body = await request.body()
                reply = await self.service.generate(body, request.headers, client, self.submit)
            elif path == "/v1/model" and method == "GET":
                try:
                    self.service.authorize(request.headers, client)
                    reply = json_reply(200, dict(self.service.model_info(), engine="ray-serve"))
                except ApiError as exc:
                    reply = error_reply(exc)
            elif path == "/healthz":
                reply = json_reply(200, {"status": "ok"})
            elif path == "/readyz":
                reply = json_reply(200 if self.service.ready else 503, {"ready": self.service.ready})
            elif path == "/metrics":
                return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)
            else:
                reply = error_reply(ApiError(404, "not_found", f"no route {method} {path}"))
            return Response(reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers)

    return GeneratorDeployment.bind(dataclasses.asdict(config))


def run_ray(config: ServeConfig, address: Optional[str] = None, min_replicas: int = 1, max_replicas: int = 2,
            target_ongoing: float = 16.0, cpus_per_replica: float = 1.0) -> int:
    """Start (or join) Ray, deploy, serve until SIGTERM / SIGINT, then shut Serve down gracefully."""
    if not config.batching:
        raise ValueError("--no-batching is the one-process baseline; on Ray, @serve.batch always batches")
    if config.ssl_certfile:
        raise ValueError("--ssl-certfile with --ray: terminate TLS in front of Ray's HTTP proxy instead")
    if min_replicas < 0 or max_replicas < max(1, min_replicas):
        raise ValueError(f"need 0 <= --ray-min-replicas <= --ray-max-replicas (>= 1), got {min_replicas}, "
                         f"{max_replicas}")
    import ray
    from ray import serve

    ray.init(address=address, include_dashboard=False, logging_level="warning", log_to_driver=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": config.host, "port": config.port})
        app = deployment(config, min_replicas, max_replicas, target_ongoing, cpus_per_replica)
        serve.run(app, name="fastgan", route_prefix="/", blocking=False)
        print(f"fastgan-kernels serve: {config.checkpoint} on Ray Serve ({min_replicas}-{max_replicas} replicas, "
              f"target {target_ongoing:g} ongoing requests each) at http://{config.host}:{config.port}",
              file=sys.stderr, flush=True)
        stop.wait()
    finally:
        serve.shutdown()  # replicas finish their in-flight requests (graceful_shutdown_timeout_s)
        ray.shutdown()
    return 0

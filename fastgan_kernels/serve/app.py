"""The HTTP service: FastAPI routes over :class:`~.service.GeneratorService`, run by uvicorn.

Routes: ``POST /v1/generate``, ``GET /v1/model`` (both behind the API key when keys are set),
``GET /healthz`` (alive), ``GET /readyz`` (model loaded and warmed up; 503 while loading and
once draining), ``GET /metrics`` (Prometheus text). Every error is JSON
``{"error": {"kind", "message"}}``.

Shutdown (SIGTERM or SIGINT): uvicorn stops listening and lets the requests already in flight
finish (no graceful-shutdown timeout is set); /readyz turns 503 at once so a load balancer
stops sending; then the lifespan's end drains the batch queue before the process exits.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time

import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from .batching import DynamicBatcher
from .config import ServeConfig
from .metrics import CONTENT_TYPE_LATEST, ServiceMetrics
from .model import BatchRunner, load
from .service import ApiError, GeneratorService, Reply, error_reply, json_reply

log = logging.getLogger("fastgan_kernels.serve")


class LatencyMiddleware:
    """Pure ASGI middleware: every HTTP request's latency into the histogram, by endpoint and status."""

    KNOWN = ("/v1/generate", "/v1/model", "/healthz", "/readyz", "/metrics")

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            endpoint = path if path in self.KNOWN else "other"
            self.metrics.request_latency.labels(endpoint, str(status[0])).observe(time.perf_counter() - start)


async def read_body(request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes (never read whole)."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError(413, "too_large", f"request body is {length} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"request body is over the limit of {limit} bytes")
    return bytes(body)


def create_app(service: GeneratorService, batcher: DynamicBatcher, metrics: ServiceMetrics, warmup: bool = True):
    def respond(reply: Reply) -> Response:
        return Response(reply.body, status_code=reply.status, media_type=reply.media_type, headers=reply.headers)

    def fail(exc: ApiError) -> Response:
        metrics.errors.labels(exc.kind).inc()
        return respond(error_reply(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if warmup:  # first calls pay for lazy set-up (weight packing, allocator): not the first client
            m = service.model
            for n in sorted({1, batcher.max_batch}):
                z = torch.randn(n, m.latent_dim)
                labels = torch.arange(n) % m.num_classes if m.conditional else None
                await batcher.run_alone(z, labels)
        service.ready = True
        metrics.ready.set(1)
        log.info("ready: runner %s, batching %s", service.model.runner, "on" if batcher.batching else "off")
        try:
            yield
        finally:
            service.ready = False
            metrics.ready.set(0)
            await batcher.drain()
            log.info("drained: every queued request was answered")

    app = FastAPI(title="fastgan-kernels generator", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.service = service

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # 404 / 405 in the same JSON shape as ours
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return respond(json_reply(exc.status_code, {"error": {"kind": kind, "message": str(exc.detail)}}))

    @app.exception_handler(Exception)
    async def internal_error(request, exc):  # never a traceback to the client
        log.error("internal error on %s: %s: %s", request.url.path, type(exc).__name__, exc)
        return fail(ApiError(500, "internal", "internal error"))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        if service.ready and not service.draining:
            return {"ready": True, "runner": service.model.runner}
        why = "draining" if service.draining else "loading"
        return respond(json_reply(503, {"ready": False, "reason": why}))

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def model_info(request: Request):
        try:
            service.authorize(request.headers, request.client.host if request.client else "?")
        except ApiError as exc:
            return fail(exc)
        return service.model_info()

    @app.post("/v1/generate")
    async def generate(request: Request):
        try:
            body = await read_body(request, service.config.max_body_bytes)
        except ApiError as exc:
            return fail(exc)
        client = request.client.host if request.client else "?"
        return respond(await service.generate(body, request.headers, client, batcher.submit))

    app.add_middleware(LatencyMiddleware, metrics=metrics)
    return app


def build(config: ServeConfig):
    """(app, service, batcher, metrics) for a config: the model is loaded here."""
    config.validate()
    model = load(config.checkpoint, config.device, config.runner)
    metrics = ServiceMetrics(config.max_batch)
    service = GeneratorService(model, config, metrics)
    batcher = DynamicBatcher(BatchRunner(model, metrics, config.threads), config.max_batch, config.max_wait_ms, config.batching,
                             metrics, config.max_queue_images, arriving=lambda: service.arriving)
    return create_app(service, batcher, metrics, config.warmup), service, batcher, metrics


def run(config: ServeConfig, access_log: bool = False) -> int:
    """Serve until SIGTERM / SIGINT, then drain; returns the exit code."""
    import uvicorn

    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app, service, batcher, _ = build(config)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):  # /readyz says "draining" from the first signal on
            service.draining = True  # requests already delivered are still served
            super().handle_exit(sig, frame)

    uv = uvicorn.Config(app, host=config.host, port=config.port, log_level=config.log_level, access_log=access_log,
                        ssl_certfile=config.ssl_certfile, ssl_keyfile=config.ssl_keyfile,
                        timeout_graceful_shutdown=None, lifespan="on")
    scheme = "https" if config.ssl_certfile else "http"
    print(f"fastgan-kernels serve: {config.checkpoint} (runner {service.model.runner}, batching "
          f"{'max %d images / %g ms' % (config.max_batch, config.max_wait_ms) if config.batching else 'off'}) "
          f"on {scheme}://{config.host}:{config.port}", file=sys.stderr, flush=True)
    # uvicorn re-raises the signal it caught once it has shut down, into the handler that was in place
    # before it started: a no-op one here, so a complete drain ends with exit code 0, not "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    DrainingServer(uv).run()
    return 0

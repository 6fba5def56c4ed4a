"""The request handler, independent of the web framework: FastAPI (app.py) and Ray Serve
(ray_app.py) both call it, so the one-process service and the scaled-out one behave alike.

``POST /v1/generate`` takes JSON ``{"n", "seed", "labels", "truncation", "format", "nrow",
"scale"}``; every problem is an :class:`ApiError` (status, kind, message) rendered as
``{"error": {"kind", "message"}}``, never a traceback. Latents are drawn per request from a
``torch.Generator`` seeded with ``seed`` (drawn at random and returned in ``X-Seed`` when
absent), so the same seed gives the same images however the request is batched.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal, Mapping, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .auth import KeyChecker, RateLimiter, load_keys, presented_key
from .batching import Draining, QueueFull, Result
from .config import ServeConfig
from .model import InjectedFailure, LoadedModel

log = logging.getLogger("fastgan_kernels.serve")

TRUNCATION_RESAMPLES = 64   # rounds of redrawing |z| > t before the last stragglers are clamped


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    n: int = Field(1, ge=1, description="images to generate")
    seed: Optional[int] = Field(None, ge=0, le=2 ** 63 - 1)
    labels: Optional[list[int]] = Field(None, min_length=1, description="conditional: class labels, cycled to n")
    truncation: Optional[float] = Field(None, gt=0, le=10, description="redraw latent values with |z| > t")
    format: Literal["png", "png_list", "npy"] = "png"
    nrow: Optional[int] = Field(None, ge=1, le=1024, description="png grid: images per row")
    scale: int = Field(1, ge=1, le=8, description="png: pixel enlargement factor")


@dataclass
class Reply:
    status: int
    body: bytes
    media_type: str
    headers: dict = field(default_factory=dict)


def json_reply(status: int, obj, headers: Optional[dict] = None) -> Reply:
    return Reply(status, json.dumps(obj).encode(), "application/json", headers or {})


def error_reply(exc: ApiError) -> Reply:
    return json_reply(exc.status, {"error": {"kind": exc.kind, "message": exc.message}}, exc.headers)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors():
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


# (z, labels, inject_failure) -> Result
Submit = Callable[[torch.Tensor, Optional[torch.Tensor], bool], Awaitable[Result]]


class GeneratorService:
    def __init__(self, model: LoadedModel, config: ServeConfig, metrics=None):
        self.model, self.config, self.metrics = model, config, metrics
        self.keys = KeyChecker(load_keys(config.api_keys_file)) if config.api_keys_file else None
        self.limiter = RateLimiter(config.rate_limit, config.effective_burst)
        self.ready = False
        self.draining = False     # set on SIGTERM: /readyz turns 503, requests already here are served
        # Requests inside the handler that have not reached the batch queue yet: the batcher waits
        # for company only while some are on their way (DynamicBatcher's ``arriving``).
        self.arriving = 0

    # ----------------------------------------------------------------- access
    def authorize(self, headers: Mapping[str, str], client: str) -> str:
        """The caller's name (key name, or the client address without keys); 401 / 429 otherwise."""
        who = f"addr:{client}"
        if self.keys is not None:
            name = self.keys.identify(presented_key(headers))
            if name is None:
                raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY "
                                                    "or X-API-Key: KEY)", {"WWW-Authenticate": "Bearer"})
            who = f"key:{name}"
        wait = self.limiter.acquire(who)
        if wait > 0:
            raise ApiError(429, "rate_limited", f"rate limit of {self.config.rate_limit:g} requests/s exceeded; "
                                                f"retry in {wait:.2f} s", {"Retry-After": str(max(1, round(wait)))})
        return who

    # ----------------------------------------------------------------- parsing
    def parse(self, body: bytes) -> GenerateRequest:
        if len(body) > self.config.max_body_bytes:
            raise ApiError(413, "too_large", f"request body is {len(body)} bytes; the limit is "
                                             f"{self.config.max_body_bytes}")
        try:
            data = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object")
        try:
            req = GenerateRequest.model_validate(data)
        except ValidationError as exc:
            raise ApiError(400, "bad_request", _validation_message(exc)) from None
        cfg, m = self.config, self.model
        if req.n > cfg.max_n:
            raise ApiError(400, "bad_request", f"n: {req.n} is over the limit of {cfg.max_n} images per request")
        if req.labels is not None:
            if not m.conditional:
                raise ApiError(400, "bad_request", "labels: this generator is not conditional")
            if len(req.labels) > req.n:
                raise ApiError(400, "bad_request", f"labels: {len(req.labels)} labels for n={req.n} images")
            bad = [v for v in req.labels if not 0 <= v < m.num_classes]
            if bad:
                raise ApiError(400, "bad_request", f"labels: must be in [0, {m.num_classes}), got {bad[:5]}")
        return req

    def latents(self, req: GenerateRequest) -> tuple[torch.Tensor, Optional[torch.Tensor], int]:
        seed = req.seed if req.seed is not None else secrets.randbits(63)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(req.n, self.model.latent_dim, generator=gen)
        if req.truncation is not None:  # the truncation trick: a narrower latent, more typical images
            for _ in range(TRUNCATION_RESAMPLES):
                out = z.abs() > req.truncation
                if not out.any():
                    break
                z = torch.where(out, torch.randn(z.shape, generator=gen), z)
            z = z.clamp(-req.truncation, req.truncation)
        labels = None
        if self.model.conditional:
            pool = torch.tensor(req.labels if req.labels else range(self.model.num_classes), dtype=torch.int64)
            labels = pool[torch.arange(req.n) % pool.numel()]
        return z, labels, seed

    # ----------------------------------------------------------------- generate
    async def generate(self, body: bytes, headers: Mapping[str, str], client: str, submit: Submit) -> Reply:
        """The whole of ``POST /v1/generate``: auth, limits, latents, the batch, the encoded answer."""
        if self.metrics is not None:
            self.metrics.in_flight.inc()
        self.arriving += 1
        left = [False]

        def arrived() -> None:  # once per request: when it is queued, or when it ends without being queued
            if not left[0]:
                left[0] = True
                self.arriving -= 1

        try:
            return await self._generate(body, headers, client, submit, arrived)
        finally:
            arrived()
            if self.metrics is not None:
                self.metrics.in_flight.dec()

    async def _generate(self, body: bytes, headers: Mapping[str, str], client: str, submit: Submit,
                        arrived: Callable[[], None]) -> Reply:
        try:
            if not self.ready:
                raise ApiError(503, "unavailable", "the model is still loading", {"Retry-After": "1"})
            self.authorize(headers, client)
            req = self.parse(body)
            z, labels, seed = self.latents(req)
            fail = headers.get("x-test-fail-batch") == "1"
            arrived()
            try:
                result = await submit(z, labels, fail)
            except (Draining, QueueFull) as exc:
                raise ApiError(503, "unavailable", str(exc), {"Retry-After": "1"}) from None
            except InjectedFailure as exc:
                raise ApiError(500, "model_error", f"the batch failed: {exc}") from None
            except Exception as exc:  # the model raised: this request fails, the service goes on
                log.error("batch failed: %s: %s", type(exc).__name__, exc)
                raise ApiError(500, "model_error", f"the batch failed: {type(exc).__name__}") from None
            reply = await self._encode(req, result, labels)
        except ApiError as exc:
            if self.metrics is not None:
                self.metrics.errors.labels(exc.kind).inc()
            return error_reply(exc)
        reply.headers.update({"X-Seed": str(seed), "X-Queue-Ms": f"{1e3 * result.queue_wait_s:.3f}",
                              "X-Model-Ms": f"{1e3 * result.model_s:.3f}",
                              "X-Batch-Sizes": ",".join(str(b) for b in result.batch_sizes)})
        if labels is not None:
            reply.headers["X-Labels"] = ",".join(str(int(v)) for v in labels)
        return reply

    async def _encode(self, req: GenerateRequest, result: Result, labels: Optional[torch.Tensor]) -> Reply:
        images = result.images
        if req.format == "npy":
            buf = io.BytesIO()
            np.save(buf, images.numpy().astype(np.float32, copy=False))
            return Reply(200, buf.getvalue(), "application/x-npy")
        # PNG encoding takes milliseconds for large requests: off the event loop.
        return await asyncio.to_thread(_encode_png, req, images, labels)

    def model_info(self) -> dict:
        cfg = self.config
        return dict(self.model.info, ready=self.ready,
                    batching={"enabled": cfg.batching, "max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms},
                    limits={"max_n": cfg.max_n, "max_body_bytes": cfg.max_body_bytes,
                            "rate_limit_per_s": cfg.rate_limit, "api_keys": self.keys is not None})


def _png_bytes(grid: torch.Tensor) -> bytes:
    from PIL import Image

    array = grid[:, :, 0] if grid.shape[2] == 1 else grid
    buf = io.BytesIO()
    Image.fromarray(array.numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _encode_png(req: GenerateRequest, images: torch.Tensor, labels: Optional[torch.Tensor]) -> Reply:
    from ..train.grid import make_grid

    if req.format == "png":
        return Reply(200, _png_bytes(make_grid(images, req.nrow, pad=1, scale=req.scale)), "image/png")
    pngs = [base64.b64encode(_png_bytes(make_grid(img[None], 1, pad=0, scale=req.scale))).decode("ascii")
            for img in images]
    body = {"images": pngs, "shape": list(images.shape[1:]),
            "labels": labels.tolist() if labels is not None else None}
    return json_reply(200, body)

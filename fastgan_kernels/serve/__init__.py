"""Serving a generator: HTTP with dynamic batching, Prometheus metrics, API keys and limits.

Modules: ``config`` (every setting), ``model`` (loading, the runner, the batch function),
``batching`` (the dynamic batcher), ``auth`` (API keys, rate limits), ``metrics``
(Prometheus), ``service`` (the framework-free request handler), ``app`` (FastAPI + uvicorn),
``ray_app`` (the same handler as a Ray Serve deployment), ``loadgen`` (the async load
generator of the benchmark), ``cli``. Needs the ``serve`` extra; Ray the ``ray`` extra.
Nothing here is imported by ``import fastgan_kernels``.
"""
from .config import ServeConfig

__all__ = ["ServeConfig"]

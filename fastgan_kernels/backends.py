"""Which kernel runs an op: the backend names and their availability.

``auto`` picks by device: CUDA tensors go to Triton (or the CUDA extension when
Triton is missing), CPU tensors to the C++ extension. Any backend can be forced per
call or per module, so tests and benchmarks reach every kernel; a forced backend
that cannot run raises a RuntimeError that says why. On a CPU-only machine the
Triton kernels run in Triton's interpreter when ``TRITON_INTERPRET=1`` was set
before triton was imported.
"""
from __future__ import annotations

import functools
import importlib.util
import os

import torch

from . import _ext

BACKENDS = ("auto", "triton", "cuda_ext", "cpu_ext", "reference")


def check_backend(backend: str) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


@functools.lru_cache(maxsize=None)
def _triton_import_reason() -> str:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # pragma: no cover - broken installs
        return f"triton failed to import: {exc}"
    return ""


@functools.lru_cache(maxsize=None)
def triton_interpreted() -> bool:
    """Whether Triton runs in its interpreter; read once (triton itself reads it at import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason(backend: str, device: torch.device, ext_op: str | None = None) -> str:
    """Why ``backend`` cannot run on ``device`` ("" when it can).

    ``ext_op`` names the fastgan_ext kernel the op would call, for the extension backends.
    """
    device = torch.device(device)
    if backend == "reference":
        return ""
    if backend == "triton":
        reason = _triton_import_reason()
        if reason:
            return reason
        if device.type == "cuda":
            return ""
        if device.type == "cpu":
            return "" if triton_interpreted() else "Triton runs CPU tensors only in its interpreter (TRITON_INTERPRET=1)"
        return f"Triton has no kernels for device {device.type}"
    if backend in ("cpu_ext", "cuda_ext"):
        key = "CPU" if backend == "cpu_ext" else "CUDA"
        if device.type != key.lower():
            return f"{backend} runs {key.lower()} tensors, got a tensor on {device.type}"
        if not _ext.AVAILABLE:
            return _ext.REASON
        if ext_op is not None and not _ext.has_kernel(ext_op, key):
            why = " (the extension was built without CUDA)" if key == "CUDA" else ""
            return f"the extension has no {key} kernel for fastgan_ext::{ext_op}{why}"
        return ""
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve(backend: str, device: torch.device, ext_op: str | None = None) -> str:
    """The concrete backend for ``backend`` on ``device``; raises if a forced one cannot run.

    Runs on every op call, so the answer is cached (it depends only on the arguments, on what
    the extension registered at import and on TRITON_INTERPRET, which is part of the key).
    """
    check_backend(backend)
    if not isinstance(device, torch.device):
        device = torch.device(device)
    return _resolve(backend, device, ext_op, triton_interpreted())


@functools.lru_cache(maxsize=256)
def _resolve(backend: str, device: torch.device, ext_op: str | None, interpreted: bool) -> str:
    if backend != "auto":
        reason = unavailable_reason(backend, device, ext_op)
        if reason:
            raise RuntimeError(f"backend={backend!r} cannot run here: {reason}")
        return backend
    order = {"cuda": ("triton", "cuda_ext"), "cpu": ("cpu_ext",)}.get(device.type, ())
    for candidate in order:
        if not unavailable_reason(candidate, device, ext_op):
            return candidate
    return "reference"


def available(device: torch.device, ext_op: str | None = None) -> dict[str, str]:
    """Every concrete backend and why it cannot run on ``device`` ("" = it can)."""
    return {b: unavailable_reason(b, device, ext_op) for b in BACKENDS if b != "auto"}

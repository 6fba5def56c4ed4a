"""Provider builders every suite can reuse: eager PyTorch, torch.compile, the fastgan backends.

torch.compile choice (recorded in every report through ``COMPILE_NOTE``): each case
gets its own static-shape compilation, ``torch.compile(fn, dynamic=False,
fullgraph=True)`` after ``torch.compiler.reset()``. That is what a user deploying a
generator at a fixed batch size gets, and the peer at its strongest: shape-specialised
code, and one cache entry so guard checks stay minimal. Measured on the 2-core
machine: the first compilation of a process costs 5-20 s (Inductor warm-up), each
further case about 0.8 s, against ~4 s for a single ``dynamic=True`` graph reused by
every shape; the compilation time of each case is reported as ``setup_s``, outside the
timed calls.
"""
from __future__ import annotations

import functools
import importlib.util
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from .. import backends
from .registry import Case, Provider

COMPILE_NOTE = ("torch.compile(fn, dynamic=False, fullgraph=True, mode='default'), compiled once per case "
                "after torch.compiler.reset(); compile time reported as setup_s, outside the timing")
TRITON_CPU_REASON = ("the Triton interpreter (TRITON_INTERPRET=1) is a correctness tool, not a benchmark: "
                     "Triton kernels are timed on CUDA only")


def _bind(fn: Callable, inputs: Any, **kwargs) -> Callable[[], Any]:
    return functools.partial(fn, *inputs, **kwargs)


def eager(fn: Callable, description: str = "") -> Provider:
    """The baseline: ``fn(*inputs)`` in plain PyTorch."""
    return Provider("eager", "eager", lambda case, inputs: _bind(fn, inputs), description=description)


def compiled(fn: Callable, name: str = "torch.compile", description: str = "") -> Provider:
    """``fn`` under torch.compile (see the module docstring for the choice); compiles inside ``build``."""

    def build(case: Case, inputs: Any) -> Callable[[], Any]:
        torch.compiler.reset()
        call = _bind(torch.compile(fn, dynamic=False, fullgraph=True), inputs)
        call()  # compile now, so that the runner times it as set-up
        return call

    def skip(case: Case) -> str:
        if case.device == "cuda" and importlib.util.find_spec("triton") is None:
            return "torch.compile on CUDA needs triton, which is not installed"
        return ""

    return Provider(name, "peer", build, skip, description=description or COMPILE_NOTE)


def fastgan_backends(fn: Optional[Callable], ext_op: "str | Sequence[str]",
                     kernel_modules: Optional[dict[str, str]] = None,
                     names: Iterable[str] = ("cpu_ext", "triton", "cuda_ext", "reference"),
                     default: Iterable[str] = ("cpu_ext", "triton", "cuda_ext"),
                     build: Optional[Callable[[Case, Any, str], Callable[[], Any]]] = None,
                     variant: str = "", description: str = "") -> list[Provider]:
    """One provider per fastgan backend: ``fn(*inputs, backend=name)``.

    ``build(case, inputs, backend)``, when given instead of ``fn``, returns the callable to time
    (e.g. a module converted once, outside the timing). ``ext_op`` may name several extension
    kernels the provider needs (the first one missing is the skip reason). ``variant`` names a
    second configuration of the same backends: providers "fastgan:<backend>:<variant>".

    Each can run only where ``fastgan_kernels.backends.unavailable_reason`` says so (and
    where its kernel module, named in ``kernel_modules``, exists); otherwise it is
    skipped with that reason. Triton on CPU is skipped: the interpreter is for
    correctness. The ``reference`` backend is not in the default set (it is plain
    PyTorch in float32) but can be asked for with ``--provider fastgan:reference``.
    """
    kernel_modules = kernel_modules or {}
    default = set(default)
    ext_ops = (ext_op,) if isinstance(ext_op, str) else tuple(ext_op)
    providers = []
    for backend in names:
        def skip(case: Case, backend: str = backend) -> str:
            if backend == "triton" and case.device != "cuda":
                return TRITON_CPU_REASON
            module = kernel_modules.get(backend)
            if module and importlib.util.find_spec(module) is None:
                return f"{module} does not exist yet"
            for op in ext_ops:
                reason = backends.unavailable_reason(backend, torch.device(case.device), op)
                if reason:
                    return reason
            return ""

        def build_one(case: Case, inputs: Any, backend: str = backend) -> Callable[[], Any]:
            return build(case, inputs, backend) if build is not None else _bind(fn, inputs, backend=backend)

        name = f"fastgan:{backend}" + (f":{variant}" if variant else "")
        providers.append(Provider(name, "fastgan", build_one, skip, backend in default,
                                  description or f"fastgan_kernels, backend={backend!r}"))
    return providers

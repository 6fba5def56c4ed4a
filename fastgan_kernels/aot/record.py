"""Record the kernel launches a Triton module makes, without a GPU and without running anything.

A kernel module (``fastgan_kernels/triton/*.py``) declares what it launches with a module-level
generator ``aot_launches()`` that yields ``(label, thunk)`` pairs: each thunk calls the module's
own launch functions on ``device="meta"`` tensors. :func:`record_module` runs every thunk with
``Autotuner.run`` and ``JITFunction.run`` replaced by a recorder, so the launchers do all their
real work (validation, strides, constexpr choices, grid lambdas) and each ``kernel[grid](...)``
becomes a :class:`Launch` instead of a GPU call. Meta tensors have no storage and report
``data_ptr() == 0``, i.e. 16-byte aligned, which is what a contiguous CUDA launch specialises on.

A :class:`Launch` is plain data (tensors become their dtype name), so it crosses a process pool.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import pkgutil
from typing import Any, Iterator

import torch
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import JITFunction

KERNEL_PACKAGE = "fastgan_kernels.triton"


@dataclasses.dataclass(frozen=True)
class TensorArg:
    """A tensor argument as the compiler sees it: only its dtype (and the 16-byte alignment of meta tensors)."""
    dtype: str  # e.g. "float16", a torch dtype attribute name


@dataclasses.dataclass
class Launch:
    module: str  # e.g. "fastgan_kernels.triton.fused_linear"
    attr: str  # the module attribute launched: an Autotuner or a @triton.jit kernel
    label: str  # the aot_launches label, e.g. "forward fp16"
    args: tuple  # positional arguments, TensorArg in place of tensors
    kwargs: dict  # keyword arguments (constexprs and launch options)
    autotuned: bool  # attr is an Autotuner: its GPU config list is swept


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return TensorArg(str(v.dtype).removeprefix("torch."))
    return v


def _attr_name(module, obj) -> str:
    for name, value in vars(module).items():
        if value is obj:
            return name
    raise LookupError(f"{module.__name__}: launched kernel {obj!r} is not a module attribute")


@contextlib.contextmanager
def _recording(sink: list):
    """Replace the two launch entry points of Triton with a recorder for the duration of the block."""
    saved = Autotuner.run, JITFunction.run

    def record_autotuned(self, *args, **kwargs):
        sink.append((self, args, kwargs, True))

    def record_jit(self, *args, grid=None, warmup=False, **kwargs):
        sink.append((self, args, kwargs, False))

    Autotuner.run, JITFunction.run = record_autotuned, record_jit
    try:
        yield
    finally:
        Autotuner.run, JITFunction.run = saved


def record_module(module) -> list[Launch]:
    """Every launch ``module.aot_launches()`` makes, labelled; [] when the module declares none."""
    launches_fn = getattr(module, "aot_launches", None)
    if launches_fn is None:
        return []
    out = []
    for label, thunk in launches_fn():
        sink: list = []
        with _recording(sink):
            thunk()
        for obj, args, kwargs, autotuned in sink:
            kwargs = {k: _plain(v) for k, v in kwargs.items() if k not in ("grid", "warmup")}
            out.append(Launch(module.__name__, _attr_name(module, obj), label, tuple(_plain(a) for a in args),
                              kwargs, autotuned))
    return out


def kernel_modules() -> Iterator:
    """Every module of the Triton kernel package (imported without TRITON_INTERPRET: GPU config lists)."""
    package = importlib.import_module(KERNEL_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        yield importlib.import_module(f"{KERNEL_PACKAGE}.{info.name}")


def launchable_kernels(module) -> dict[str, JITFunction]:
    """The @triton.jit functions defined in ``module`` that are kernels (launched), not device helpers.

    A helper is a jit function some other jit function of the package calls; what remains is launched
    from Python, directly or through a module-level Autotuner. Used to report kernels that no
    ``aot_launches`` entry covers.
    """
    defined = {name: fn for name, fn in vars(module).items()
               if isinstance(fn, JITFunction) and fn.module == module.__name__}
    sources = [fn.src for mod in kernel_modules() for fn in vars(mod).values() if isinstance(fn, JITFunction)]
    return {name: fn for name, fn in defined.items()
            if not any(f"{fn.fn.__name__}(" in src for src in sources if src is not fn.src)}


def launched_fn(launch: Launch) -> JITFunction:
    obj = getattr(importlib.import_module(launch.module), launch.attr)
    return obj.fn if isinstance(obj, Autotuner) else obj


def autotune_configs(launch: Launch) -> list:
    """The configs a launch is swept over: the Autotuner's GPU list, or the launch's own options."""
    obj = getattr(importlib.import_module(launch.module), launch.attr)
    return list(obj.configs) if isinstance(obj, Autotuner) else [None]


"""Compile one recorded launch for one GPU architecture on the CPU and read its resource usage.

``triton.compile(ASTSource(fn, signature, constexprs, attrs), target=GPUTarget("cuda", arch, 32))``
runs Triton's whole GPU pipeline down to a cubin with its bundled ``ptxas``; no driver or GPU is
touched. The signature, constexprs and alignment attributes come from Triton's own launch binder
(the code path ``kernel[grid](...)`` takes), fed the recorded arguments, so the variant compiled
is the one a real launch with the same arguments would compile.

What is read back:

* ``shared``: the dynamic shared memory the kernel launches with (Triton's metadata);
* ``regs``, ``spill_stores``, ``spill_loads``, ``stack``: from ptxas's ``-v`` log (Triton always
  passes ``-v``; ``knobs.nvidia.dump_ptxas_log`` prints it, captured here);
* ``wgmma``/``tcgen05``/``mma``: whether the PTX holds Hopper warpgroup MMAs, Blackwell's
  tensor-memory MMAs or Ampere's ``mma.sync``.

Results are cached as JSON under ``$FASTGAN_AOT_CACHE`` (default ``~/.cache/fastgan_aot``), keyed by
the kernel's source hash (:func:`source_hash`: the kernel and the jit functions its module sees), the
specialisation, the options, the architecture and the Triton version, so a repeat sweep only
compiles what changed.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import time

from . import record

ARCH_NAMES = {80: "sm_80", 90: "sm_90", 100: "sm_100"}
_PTXAS_REGS = re.compile(r"Used (\d+) registers")
_PTXAS_SPILLS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def cache_dir() -> str:
    return os.environ.get("FASTGAN_AOT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastgan_aot")


def _bind(fn, launch: record.Launch, config, target):
    """(signature, constexprs, attrs, options) exactly as Triton's launch binder derives them."""
    from triton.compiler import make_backend
    from triton.runtime.jit import MockTensor, create_function_from_signature
    import torch

    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    kwargs = dict(launch.kwargs)
    if config is not None:
        kwargs.update(config["kwargs"], num_warps=config["num_warps"], num_stages=config["num_stages"])
    args = [MockTensor(getattr(torch, a.dtype)) if isinstance(a, record.TensorArg) else a for a in launch.args]
    kwargs = {k: MockTensor(getattr(torch, v.dtype)) if isinstance(v, record.TensorArg) else v
              for k, v in kwargs.items()}
    bound, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    return signature, constexprs, attrs, options


def source_hash(fn) -> str:
    """The kernel's source and that of every @triton.jit function its module can call. Unlike Triton's
    own ``cache_key`` it ignores line numbers, so editing a config list above a kernel keeps its cache."""
    from triton.runtime.jit import JITFunction
    deps = sorted((name, f.src) for name, f in fn.__globals__.items() if isinstance(f, JITFunction))
    return hashlib.sha256(json.dumps([fn.src, deps]).encode()).hexdigest()


# Bumped when a compile records new fields, so older cache entries are not read as "field absent".
RESULT_VERSION = 2  # 2: "tcgen05"


def _key(fn, signature, constexprs, attrs, options, arch) -> str:
    import triton
    blob = json.dumps([RESULT_VERSION, source_hash(fn), triton.__version__, signature, sorted(map(repr, constexprs.items())),
                       sorted(map(repr, attrs.items())), options.num_warps, options.num_stages, arch], default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def parse_ptxas_log(log: str) -> dict:
    """Registers and spills of the (single) kernel in a ``ptxas -v`` log."""
    regs = _PTXAS_REGS.search(log)
    spills = _PTXAS_SPILLS.search(log)
    if regs is None or spills is None:
        raise ValueError(f"unrecognised ptxas log:\n{log}")
    stack, stores, loads = map(int, spills.groups())
    return {"regs": int(regs.group(1)), "stack": stack, "spill_stores": stores, "spill_loads": loads}


def compile_variant(launch: record.Launch, config, arch: int, use_cache: bool = True) -> dict:
    """Resource usage of one (launch, config, arch); ``{"error": ...}`` when the compiler refuses it."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = record.launched_fn(launch)
    target = GPUTarget("cuda", arch, 32)
    signature, constexprs, attrs, options = _bind(fn, launch, config, target)
    path = os.path.join(cache_dir(), _key(fn, signature, constexprs, attrs, options, arch) + ".json")
    if use_cache and os.path.exists(path):
        with open(path) as f:
            return {**json.load(f), "cached": True}

    knobs.nvidia.dump_ptxas_log = True  # Triton prints ptxas's -v log; captured below
    log = io.StringIO()
    start = time.perf_counter()
    # A private Triton cache: a hit in the user's cache would skip ptxas and so its log.
    with tempfile.TemporaryDirectory() as tmp, knobs.cache.scope(), contextlib.redirect_stdout(log):
        knobs.cache.dir = tmp
        try:
            kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs), target=target,
                                    options=options.__dict__)
            ptx = kernel.asm["ptx"]
            result = {"shared": int(kernel.metadata.shared), **parse_ptxas_log(log.getvalue()),
                      "wgmma": "wgmma.mma_async" in ptx, "tcgen05": "tcgen05.mma" in ptx,
                      "mma": "mma.sync" in ptx}
        except Exception as e:  # a config the compiler rejects is a result too (reported, not hidden)
            result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
    result["compile_s"] = round(time.perf_counter() - start, 2)
    os.makedirs(cache_dir(), exist_ok=True)
    tmp_path = f"{path}.{os.getpid()}.tmp"
    with open(tmp_path, "w") as f:
        json.dump(result, f)
    os.replace(tmp_path, path)  # atomic: concurrent sweeps never read half a file
    return {**result, "cached": False}

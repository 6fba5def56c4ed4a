"""The compiled extension ``fastgan_kernels._C`` (ops under ``torch.ops.fastgan_ext``).

Importing this module never fails: when the extension is missing (not built, or built
for another torch) ``AVAILABLE`` is False and ``REASON`` says why, so the Triton and
reference backends keep working and tests skip the C++ kernels with that reason.
"""
from __future__ import annotations

import contextlib
import enum
import functools
from typing import Iterator

import torch

try:
    from . import _C  # noqa: F401  (registers torch.ops.fastgan_ext)

    AVAILABLE = True
    REASON = ""
except ImportError as exc:  # pragma: no cover - depends on the build
    AVAILABLE = False
    REASON = (f"the C++ extension fastgan_kernels._C is not available ({exc}); build it with "
              f"`pip install --no-build-isolation -e .`")


class Isa(enum.IntEnum):
    """CPU code paths, in the order the kernels prefer them (csrc/cpu/cpu_features.h)."""

    PORTABLE = 0
    AVX2 = 1
    AVX512 = 2
    AVX512_VNNI = 3
    AMX = 4


_FEATURE_NAMES = ("avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "amx_permitted")


@functools.lru_cache(maxsize=None)
def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``fastgan_ext::<op>`` has a kernel for ``dispatch_key`` ("CPU" or "CUDA").

    Cached: registrations happen when the extension is imported and do not change after.
    """
    if not AVAILABLE:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"fastgan_ext::{op}", dispatch_key)


def cpu_features() -> dict[str, bool]:
    """What this CPU and OS offer, as the extension detected it."""
    if not AVAILABLE:
        return {}
    bits = torch.ops.fastgan_ext.cpu_features()
    return {name: bool(bits >> i & 1) for i, name in enumerate(_FEATURE_NAMES)}


def max_isa() -> Isa:
    """The best CPU code path this machine supports."""
    return Isa(torch.ops.fastgan_ext.cpu_max_isa_level()) if AVAILABLE else Isa.PORTABLE


def isa() -> Isa:
    """The CPU code path the kernels use now (the machine's best, lowered by any cap)."""
    return Isa(torch.ops.fastgan_ext.cpu_isa_level()) if AVAILABLE else Isa.PORTABLE


@contextlib.contextmanager
def cpu_isa(level: Isa | int | str) -> Iterator[Isa]:
    """Cap the CPU kernels at ``level`` inside the block (tests reach every code path).

    Yields the level actually in effect, which is lower when the machine lacks ``level``.
    """
    if not AVAILABLE:
        raise RuntimeError(REASON)
    level = Isa[level.upper()] if isinstance(level, str) else Isa(int(level))
    previous = torch.ops.fastgan_ext.set_cpu_isa(int(level))
    try:
        yield isa()
    finally:
        torch.ops.fastgan_ext.set_cpu_isa(previous)


@contextlib.contextmanager
def amx_emulation(on: bool = True) -> Iterator[bool]:
    """Tests only: inside the block, bf16 CPU GEMMs run the AMX kernel compiled against
    the scalar tile emulation (csrc/cpu/amx_emulation.h), so its tiling and packing are
    tested on machines without AMX. It needs AVX-512 (its packing and epilogue use it)
    and yields whether the emulated kernel is what bf16 now takes under the current cap.
    """
    if not AVAILABLE:
        raise RuntimeError(REASON)
    previous = torch.ops.fastgan_ext.set_amx_emulation(bool(on))
    try:
        yield cpu_gemm_path(torch.bfloat16) == "amx_bf16_emulated"
    finally:
        torch.ops.fastgan_ext.set_amx_emulation(previous)


@contextlib.contextmanager
def blas_gemm(on: bool = True) -> Iterator[str]:
    """Tests / benchmarks: inside the block, fp32 CPU GEMMs below AVX-512 may (on, the
    default) or may not (off: the AVX2 micro-kernel) take the vendor-GEMM path
    (ATen sgemm + our epilogue). Yields the fp32 path now selected."""
    if not AVAILABLE:
        raise RuntimeError(REASON)
    previous = torch.ops.fastgan_ext.set_blas_gemm(bool(on))
    try:
        yield cpu_gemm_path(torch.float32)
    finally:
        torch.ops.fastgan_ext.set_blas_gemm(previous)


def cpu_gemm_path(dtype: torch.dtype) -> str:
    """Tests only: the CPU GEMM path fused-linear kernels take now for ``dtype``:
    "portable", "avx512_fp32", "avx512_bf16", "amx_bf16" or "amx_bf16_emulated"."""
    if not AVAILABLE:
        raise RuntimeError(REASON)
    return torch.ops.fastgan_ext.fused_linear_cpu_path(dtype)

"""One allocator setting for every provider: glibc's mmap and trim thresholds, set in-process.

glibc serves large buffers with fresh ``mmap``s, and every first touch of such a page
costs a fault (~1 us on the project's machines), so a kernel that allocates a large
output can look slower or faster depending on which other tensors are alive
(shared/CPU_NOTES.md). Raising the mmap threshold to 64 MiB and the trim threshold to
256 MiB keeps those buffers in the heap and reuses them; doing it once at harness start
means eager PyTorch, torch.compile and every fastgan backend run under the same rules.
The ``GLIBC_TUNABLES`` environment variable does the same before Python starts (the
Makefile sets it too); both are recorded in the report.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20

_state: dict | None = None


def configure(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> dict:
    """Apply the thresholds with ``mallopt`` (once per process) and describe what is in effect."""
    global _state
    if _state is not None:
        return _state
    state = {
        "mmap_threshold": mmap_threshold,
        "trim_threshold": trim_threshold,
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
        "applied": False,
    }
    libc_name = platform.libc_ver()[0]
    if platform.system() != "Linux" or libc_name != "glibc":
        state["note"] = f"not glibc ({platform.system()} {libc_name or 'unknown libc'}): allocator left as it is"
        _state = state
        return state
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok_mmap = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold))
        ok_trim = libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold))
    except (OSError, AttributeError) as exc:  # pragma: no cover - exotic libc builds
        state["note"] = f"mallopt unavailable: {exc}"
        _state = state
        return state
    state["applied"] = bool(ok_mmap) and bool(ok_trim)
    state["note"] = (f"mallopt(M_MMAP_THRESHOLD={mmap_threshold >> 20} MiB, M_TRIM_THRESHOLD={trim_threshold >> 20} MiB)"
                     + ("" if state["applied"] else f" refused (mmap: {ok_mmap}, trim: {ok_trim})"))
    _state = state
    return state


def describe() -> str:
    """One line for reports."""
    state = configure()
    env = state["glibc_tunables"]
    return state["note"] + (f"; GLIBC_TUNABLES={env}" if env else "; GLIBC_TUNABLES unset")

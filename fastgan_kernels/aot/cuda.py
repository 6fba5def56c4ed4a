"""CUDA C++ kernels (csrc/cuda/*.cu): compiled with nvcc, their ``-Xptxas -v`` resources and occupancy.

No GPU needed: nvcc compiles each source for sm_80 and sm_90 against the installed torch's headers
(``-Xptxas -v -keep``). Per kernel entry and arch the ptxas log gives registers, spills and *static*
shared memory; the kept PTX gives the launch bounds (``.maxntid``, threads per block) and, for the
kernels that size their shared memory at launch (``extern __shared__``: the tensor-core GEMMs), the
line ``FASTGAN_DYNAMIC_SMEM`` (csrc/cuda/common.cuh) writes with the bytes the launcher requests.

Occupancy = resident warps per SM / 64, with blocks per SM limited by registers (allocated per warp
in units of 256), static + dynamic shared memory, 2048 threads and 32 blocks.

``tools/check_cuda_sources.py`` (``make cuda-check``, CI's first step) compiles every source with
:func:`compile_all` and fails on one that does not compile or on a kernel :func:`problems` names (a
register spill); ``python -m fastgan_kernels.aot --cuda`` adds :func:`markdown`'s table to
docs/gpu_resources.md and, with ``--check``, fails on the same problems.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from typing import Optional, Sequence

from ..triton._resources import SMEM_PER_BLOCK

DEFAULT_ARCHS = (80, 90)
_ENTRY = re.compile(r"Compiling entry function '(\S+)' for 'sm_(\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
_PTX_ENTRY = re.compile(r"\.entry (\S+)\(")
_MAXNTID = re.compile(r"\.maxntid (\d+), (\d+), (\d+)")
_DYN_SMEM = re.compile(r"// fastgan dynamic smem: (\d+) bytes")


@dataclasses.dataclass
class CudaKernel:
    source: str
    name: str  # demangled
    arch: int
    regs: int
    spill_stores: int
    spill_loads: int
    smem: int  # static bytes
    threads: Optional[int]  # launch bounds, None when the kernel declares none
    dynamic_smem: int = 0  # bytes the launcher requests (FASTGAN_DYNAMIC_SMEM), 0 for static-only kernels

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)

    def blocks_per_sm(self) -> Optional[int]:
        if not self.threads:
            return None
        warps = -(-self.threads // 32)
        regs_per_warp = -(-self.regs * 32 // 256) * 256
        by_regs = (65536 // regs_per_warp) // warps if regs_per_warp else 32
        smem = self.smem + self.dynamic_smem
        by_smem = SMEM_PER_BLOCK[self.arch] // smem if smem else 32
        return max(0, min(by_regs, by_smem, 2048 // self.threads, 32))

    def occupancy(self) -> Optional[float]:
        blocks = self.blocks_per_sm()
        return None if blocks is None else blocks * -(-self.threads // 32) / 64


@dataclasses.dataclass
class PtxEntry:
    threads: Optional[int] = None
    dynamic_smem: int = 0


def parse(log: str, ptx: dict, source: str) -> list[CudaKernel]:
    """Kernels of one ``nvcc -Xptxas -v`` log; ``ptx`` maps (mangled name, arch) to :class:`PtxEntry`."""
    out, entry = [], None
    spill = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry, spill = (m.group(1), int(m.group(2))), None
        elif (m := _SPILL.search(line)) and entry:
            spill = tuple(int(g) for g in m.groups())
        elif (m := _USED.search(line)) and entry:
            stores, loads = (spill[1], spill[2]) if spill else (0, 0)
            info = ptx.get(entry, PtxEntry())
            out.append(CudaKernel(source, entry[0], entry[1], int(m.group(1)), stores, loads,
                                  int(m.group(2) or 0), info.threads, info.dynamic_smem))
            entry = None
    names = subprocess.run(["c++filt"], input="\n".join(k.name for k in out), capture_output=True,
                           text=True).stdout.splitlines() if out and shutil.which("c++filt") else []
    for k, name in zip(out, names):
        k.name = name
    return out


def parse_ptx(ptx: str) -> dict:
    """mangled entry name -> :class:`PtxEntry` (``.maxntid`` launch bound, FASTGAN_DYNAMIC_SMEM bytes)."""
    out, current = {}, None
    for line in ptx.splitlines():
        if m := _PTX_ENTRY.search(line):
            current = out.setdefault(m.group(1), PtxEntry())
        elif current is None:
            continue
        elif m := _MAXNTID.search(line):
            current.threads = int(m.group(1)) * int(m.group(2)) * int(m.group(3))
        elif m := _DYN_SMEM.search(line):
            current.dynamic_smem = int(m.group(1))
    return out


# ---------------------------------------------------------------------------------------------------
# nvcc
# ---------------------------------------------------------------------------------------------------
def _cxx_standard() -> str:
    """The C++ standard torch's own extension builder uses (c++17 up to ~2.9, then c++20)."""
    from torch.utils import cpp_extension
    with open(cpp_extension.__file__) as f:
        return "c++20" if "-std=c++20" in f.read() else "c++17"


def _cuda_macros_shim(includes: list, tmp: str) -> str:
    """A CPU-only torch ships c10/cuda headers without the one CMake generates.

    Its content in CUDA builds is a single define; recreate it so the check can run against a CPU
    torch (a CUDA torch has the real file, found first).
    """
    rel = os.path.join("c10", "cuda", "impl", "cuda_cmake_macros.h")
    if any(os.path.exists(os.path.join(p, rel)) for p in includes):
        return tmp
    os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
    with open(os.path.join(tmp, rel), "w") as f:
        f.write("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return tmp


def nvcc_command(root: str, src: str, obj: str, shim_dir: str, archs: Sequence[int] = DEFAULT_ARCHS) -> list:
    """``nvcc -c`` of one source with the extension's flags (the shim header, if needed, goes to shim_dir)."""
    import torch
    from torch.utils import cpp_extension
    includes = cpp_extension.include_paths() + [sysconfig.get_paths()["include"], os.path.join(root, "csrc")]
    includes.append(_cuda_macros_shim(includes, shim_dir))
    flags = [f"-std={_cxx_standard()}", "-O3", "--expt-relaxed-constexpr", "-DFASTGAN_WITH_CUDA=1",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", "-Xcompiler", "-fPIC"]
    flags += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return [shutil.which("nvcc") or "nvcc", "-c", src, "-o", obj, *flags, *[f"-I{p}" for p in includes]]


def compile_source(root: str, src: str, archs: Sequence[int] = DEFAULT_ARCHS) -> list[CudaKernel]:
    """Compile one source with ``-Xptxas -v -keep``; raises RuntimeError with nvcc's log if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = nvcc_command(root, src, os.path.join(tmp, "k.o"), tmp, archs)
        cmd += ["-Xptxas", "-v", "-keep", "-keep-dir", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed on {os.path.relpath(src, root)}:\n{proc.stderr[-4000:]}")
        ptx = {}
        for path in glob.glob(os.path.join(tmp, "*.ptx")):
            with open(path) as f:
                text = f.read()
            arch = re.search(r"\.target sm_(\d+)", text)
            for name, info in parse_ptx(text).items():
                ptx[(name, int(arch.group(1)) if arch else 0)] = info
    return parse(proc.stderr + proc.stdout, ptx, os.path.relpath(src, root))


def sources(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "csrc", "cuda", "*.cu")))


@functools.lru_cache(maxsize=None)
def _nvcc_version() -> str:
    return subprocess.run([shutil.which("nvcc") or "nvcc", "--version"], capture_output=True, text=True).stdout


def _cache_path(root: str, src: str, archs: Sequence[int]) -> str:
    """Cache file of one source's kernels: keyed by every file under csrc/cuda (the headers are shared),
    the nvcc command line (flags, archs, torch's headers) and nvcc's version."""
    from .compile import cache_dir
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(root, "csrc", "cuda", "*"))):
        with open(path, "rb") as f:
            h.update(path.encode() + f.read())
    h.update(json.dumps(nvcc_command(root, src, "k.o", "shim", archs)).encode())
    h.update(_nvcc_version().encode())
    return os.path.join(cache_dir(), "cuda-" + h.hexdigest() + ".json")


def compile_all(root: str, archs: Sequence[int] = DEFAULT_ARCHS, srcs: Optional[Sequence[str]] = None,
                log=print, use_cache: bool = True) -> list[CudaKernel]:
    """Every source's kernels; unchanged sources come from the AOT cache ($FASTGAN_AOT_CACHE)."""
    kernels = []
    for src in srcs or sources(root):
        path = _cache_path(root, src, archs)
        if use_cache and os.path.exists(path):
            with open(path) as f:
                kernels += [CudaKernel(**k) for k in json.load(f)]
            log(f"nvcc -c {os.path.relpath(src, root)}: from the cache", flush=True)
            continue
        log(f"nvcc -c {os.path.relpath(src, root)} (sm_{', sm_'.join(map(str, archs))}, -Xptxas -v)", flush=True)
        found = compile_source(root, src, archs)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            json.dump([dataclasses.asdict(k) for k in found], f)
        os.replace(path + ".tmp", path)
        kernels += found
    return kernels


def problems(kernels: list[CudaKernel]) -> list[str]:
    """Every kernel that spills registers (launched or not: the dispatcher table changes, the rule does not)."""
    return [f"{k.source}: {k.name} spills {k.spill_stores}/{k.spill_loads} B (stores/loads) on sm_{k.arch} "
            f"at {k.regs} registers" for k in kernels if k.spills]


def markdown(kernels: list[CudaKernel]) -> str:
    spilling = [k for k in kernels if k.spills]
    archs = sorted({k.arch for k in kernels})
    out = ["", "## CUDA C++ kernels (nvcc -Xptxas -v)", "",
           f"{len(kernels)} kernel entries over {'/'.join(f'sm_{a}' for a in archs)}, {len(spilling)} spilling"
           + "".join(f", {sum(k.arch == a for k in spilling)} on sm_{a}" for a in archs) +
           " (`make cuda-check`, CI's first step, compiles sm_80 + sm_90 and fails on any spill there; sm_100 is "
           "reported, not gated). smem = static + the dynamic buffer the launcher "
           "requests (FASTGAN_DYNAMIC_SMEM in the kernel's PTX); occupancy = resident warps / 64 from "
           "registers, shared memory and the launch bounds.", "",
           "| source | kernel | arch | regs | spills (st/ld B) | smem (static + dynamic) | threads | blocks/SM | "
           "occupancy |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in kernels:
        occ = k.occupancy()
        smem = f"{k.smem:,}" + (f" + {k.dynamic_smem:,}" if k.dynamic_smem else "")
        out.append(f"| {k.source} | `{k.name[:110]}` | sm_{k.arch} | {k.regs} | "
                   f"{f'{k.spill_stores}/{k.spill_loads}' if k.spills else '0'} | {smem} | "
                   f"{k.threads or '-'} | {k.blocks_per_sm() or '-'} | "
                   f"{'-' if occ is None else f'{100 * occ:.0f}%'} |")
    return "\n".join(out) + "\n"

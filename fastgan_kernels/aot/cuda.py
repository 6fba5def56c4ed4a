"""CUDA C++ kernels (csrc/cuda/*.cu): ``nvcc -Xptxas -v`` resource usage and the occupancy it implies.

No GPU needed: nvcc compiles each source for sm_80 and sm_90 (tools/check_cuda_sources.py's flags,
plus ``-Xptxas -v -keep``). Per kernel entry and arch the ptxas log gives registers, spills and
*static* shared memory; the kept PTX gives the launch bounds (``.maxntid``, threads per block).
Kernels that size their shared memory at launch (``extern __shared__``: the tensor-core GEMMs) show
static shared memory only, and their occupancy is the register limit (their dynamic size is in the
source, e.g. ``TcLarge`` 60 KB).

Occupancy = resident warps per SM / 64, with blocks per SM limited by registers (allocated per warp
in units of 256), static shared memory, 2048 threads and 32 blocks.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import subprocess
from typing import Optional

from ..triton._resources import SMEM_PER_BLOCK

_ENTRY = re.compile(r"Compiling entry function '(\S+)' for 'sm_(\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
_PTX_ENTRY = re.compile(r"\.entry (\S+)\(")
_MAXNTID = re.compile(r"\.maxntid (\d+), (\d+), (\d+)")


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

    def blocks_per_sm(self) -> Optional[int]:
        if not self.threads:
            return None
        warps = -(-self.threads // 32)
        regs_per_warp = -(-self.regs * 32 // 256) * 256
        by_regs = (65536 // regs_per_warp) // warps if regs_per_warp else 32
        by_smem = SMEM_PER_BLOCK[self.arch] // self.smem if self.smem else 32
        return max(0, min(by_regs, by_smem, 2048 // self.threads, 32))

    def occupancy(self) -> Optional[float]:
        blocks = self.blocks_per_sm()
        return None if blocks is None else blocks * -(-self.threads // 32) / 64


def parse(log: str, ptx_threads: dict, source: str) -> list[CudaKernel]:
    """Kernels of one ``nvcc -Xptxas -v`` log (mangled name -> threads from the PTX)."""
    out, entry = [], None
    spill = None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry, spill = (m.group(1), int(m.group(2))), None
        elif (m := _SPILL.search(line)) and entry:
            spill = tuple(int(g) for g in m.groups())
        elif (m := _USED.search(line)) and entry:
            stores, loads = (spill[1], spill[2]) if spill else (0, 0)
            out.append(CudaKernel(source, entry[0], entry[1], int(m.group(1)), stores, loads,
                                  int(m.group(2) or 0), ptx_threads.get(entry[0])))
            entry = None
    names = subprocess.run(["c++filt"], input="\n".join(k.name for k in out), capture_output=True,
                           text=True).stdout.splitlines() if out else []
    for k, name in zip(out, names):
        k.name = name
    return out


def ptx_threads(ptx: str) -> dict:
    """mangled entry name -> threads per block of its ``.maxntid`` launch bound."""
    out, current = {}, None
    for line in ptx.splitlines():
        if m := _PTX_ENTRY.search(line):
            current = m.group(1)
        elif (m := _MAXNTID.search(line)) and current:
            out[current] = int(m.group(1)) * int(m.group(2)) * int(m.group(3))
    return out


def compile_all(root: str, archs=(80, 90)) -> list[CudaKernel]:
    """nvcc -Xptxas -v every csrc/cuda/*.cu (tools/check_cuda_sources.py's flags) and parse the logs."""
    import sys
    import tempfile
    sys.path.insert(0, os.path.join(root, "tools"))
    import check_cuda_sources as ccs

    kernels = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(glob.glob(os.path.join(root, "csrc", "cuda", "*.cu"))):
            cmd = ccs.nvcc_command(src, os.path.join(tmp, "k.o"), tmp, archs) + ["-Xptxas", "-v", "-keep",
                                                                                   "-keep-dir", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src}:\n{proc.stderr[-3000:]}")
            threads = {}
            for ptx in glob.glob(os.path.join(tmp, "*.ptx")):
                with open(ptx) as f:
                    threads.update(ptx_threads(f.read()))
                os.remove(ptx)
            kernels += parse(proc.stderr + proc.stdout, threads, os.path.relpath(src, root))
    return kernels


def markdown(kernels: list[CudaKernel]) -> str:
    spilling = [k for k in kernels if k.spill_stores or k.spill_loads]
    out = ["", "## CUDA C++ kernels (nvcc -Xptxas -v)", "",
           f"{len(kernels)} kernel entries over sm_80/sm_90, {len(spilling)} spilling. Static shared memory only "
           "(the tensor-core kernels add their dynamic buffers at launch); occupancy = resident warps / 64 "
           "from registers, static shared memory and the launch bounds.", "",
           "| source | kernel | arch | regs | spills (st/ld B) | static smem | threads | blocks/SM | occupancy |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in kernels:
        occ = k.occupancy()
        out.append(f"| {k.source} | `{k.name[:110]}` | sm_{k.arch} | {k.regs} | "
                   f"{f'{k.spill_stores}/{k.spill_loads}' if k.spill_stores or k.spill_loads else '0'} | "
                   f"{k.smem:,} | {k.threads or '-'} | {k.blocks_per_sm() or '-'} | "
                   f"{'-' if occ is None else f'{100 * occ:.0f}%'} |")
    return "\n".join(out) + "\n"

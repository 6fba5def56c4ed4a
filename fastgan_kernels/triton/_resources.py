"""What a config asks of an SM, and the budget each GPU architecture grants: the autotune pruning rules.

Triton's autotuner compiles and times every config it is given; a config whose pipeline does not
fit the SM's shared memory fails at launch (and is skipped), one that spills registers runs slowly.
Both cost autotuning time, so each kernel module's ``early_config_prune`` drops them first, with
two estimates that hold for the kernels of this package (checked against the real compiler for
every config by ``python -m fastgan_kernels.aot``, see docs/gpu_resources.md):

* **shared memory**: ``num_stages x`` the bytes of every tile the K loop loads (A, B and, in the
  gradient kernels, the saved output ``y`` read by the prologue). Triton's pipeliner keeps
  ``num_stages`` (Hopper, wgmma) or ``num_stages - 1`` (Ampere, cp.async) copies of each, so the
  estimate is exact on sm_90 and an upper bound on sm_80; the epilogue reuses those buffers.
* **registers**: fp32 dots are exact (``input_precision="ieee"``) and run on FMAs, which read
  both operand tiles from registers; the accumulator and the operand fragments per thread,
  ``(BM*BK + BK*BN + BM*BN) / (32 * num_warps)`` 32-bit words, must stay within
  :data:`FP32_WORDS_PER_THREAD` or ptxas spills; tensor-core dots keep only the fp32/int32
  accumulator, within :data:`TC_ACC_WORDS_PER_THREAD` words except Hopper's forward GEMMs (the
  thresholds measured by the AOT sweep, docs/gpu_resources.md).

The shared-memory budget is the device's opt-in maximum per block, read from the device at run
time (``torch.cuda.get_device_properties``); :data:`SMEM_PER_BLOCK` is the fallback and what the
ahead-of-time check uses, through :func:`target_arch`.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import torch

# Opt-in dynamic shared memory per block (cudaDevAttrMaxSharedMemoryPerBlockOptin), bytes.
SMEM_PER_BLOCK = {
    80: 166_912,  # A100
    86: 101_376,  # RTX 30xx, A10, A40
    87: 166_912,  # Jetson Orin
    89: 101_376,  # L4, L40, RTX 40xx
    90: 232_448,  # H100, H200
    100: 232_448,  # B200
    103: 232_448,  # B300
    120: 101_376,  # RTX 50xx
}
FP32_WORDS_PER_THREAD = 44
# Tensor-core accumulator words per thread (BM * BN / (32 * num_warps)) beyond which ptxas spills:
# mma.sync (sm_80) and any kernel with a prologue (y's tile in registers next to the accumulator);
# Hopper's wgmma forward GEMMs hold 128-word accumulators without spilling (docs/gpu_resources.md).
TC_ACC_WORDS_PER_THREAD = 64
# Architectures whose MMA lets a forward GEMM keep a 128-word accumulator per thread spill-free (the
# AOT sweep): Hopper (wgmma) and datacenter Blackwell (tcgen05; not sm_120, which has mma.sync only).
WIDE_ACC_ARCHS = {90: "wgmma", 100: "tcgen05", 103: "tcgen05"}

_FORCED_ARCH: Optional[int] = None


@contextlib.contextmanager
def target_arch(arch: int):
    """Prune as if on compute capability ``arch`` (major * 10 + minor), without a GPU: the AOT check."""
    global _FORCED_ARCH
    saved, _FORCED_ARCH = _FORCED_ARCH, int(arch)
    try:
        yield
    finally:
        _FORCED_ARCH = saved


def arch(tensor) -> int:
    """Compute capability (major * 10 + minor) of ``tensor``'s device, or the forced one."""
    if _FORCED_ARCH is not None:
        return _FORCED_ARCH
    device = getattr(tensor, "device", None)
    if device is None or device.type != "cuda":
        return 80
    major, minor = torch.cuda.get_device_capability(device)
    return major * 10 + minor


@functools.lru_cache(maxsize=None)
def _device_smem(index: int) -> int:
    props = torch.cuda.get_device_properties(index)
    optin = getattr(props, "shared_memory_per_block_optin", 0)
    return int(optin) or SMEM_PER_BLOCK.get(props.major * 10 + props.minor, 101_376)


def smem_limit(tensor) -> int:
    """Shared memory one block may use on ``tensor``'s device (or on the forced architecture)."""
    if _FORCED_ARCH is not None:
        return SMEM_PER_BLOCK[_FORCED_ARCH]
    device = getattr(tensor, "device", None)
    if device is None or device.type != "cuda":
        return SMEM_PER_BLOCK[80]
    return _device_smem(device.index if device.index is not None else torch.cuda.current_device())


def element_bytes(tensor) -> int:
    return torch.empty((), dtype=tensor.dtype).element_size()


def words_per_thread(elems: int, num_warps: int) -> float:
    """32-bit registers per thread that ``elems`` fp32/int32 values spread over the block take."""
    return elems / (32 * num_warps)


def tc_acc_budget(tensor, prologue: bool, int8: bool = False):
    """The accumulator budget of a tensor-core kernel on ``tensor``'s device: None (no limit) for the
    forward kernels of :data:`WIDE_ACC_ARCHS` (Hopper's wgmma; datacenter Blackwell's tcgen05 except
    int8, whose dequantising epilogue spilled 56-92 B at 128 words and 4-20 B at 64 on sm_100: half
    the budget there), else :data:`TC_ACC_WORDS_PER_THREAD`."""
    a = arch(tensor)
    if prologue or a not in WIDE_ACC_ARCHS:
        return TC_ACC_WORDS_PER_THREAD
    if int8 and WIDE_ACC_ARCHS[a] == "tcgen05":  # spilled 4-92 B at 64 and 128 words (sm_100 sweep)
        return TC_ACC_WORDS_PER_THREAD // 2
    return None


def keep(configs: list, stage_bytes, limit: int, fp32_tiles=None, acc_elems=None, acc_budget=None) -> list:
    """The configs within budget: ``num_stages * stage_bytes(cfg)`` <= ``limit`` shared memory; for fp32
    FMA dots, ``fp32_tiles(cfg)`` (A + B + accumulator elements) within :data:`FP32_WORDS_PER_THREAD`;
    for tensor-core dots, ``acc_elems(cfg)`` within ``acc_budget`` words per thread (None: unlimited).
    When nothing fits (a tiny device), the cheapest config is kept so the kernel still has one to run."""
    def cost(cfg):
        fp32 = words_per_thread(fp32_tiles(cfg), cfg.num_warps) if fp32_tiles else 0.0
        acc = words_per_thread(acc_elems(cfg), cfg.num_warps) if acc_elems and acc_budget else 0.0
        return cfg.num_stages * stage_bytes(cfg), fp32, acc

    def ok(cfg):
        smem, fp32, acc = cost(cfg)
        return smem <= limit and fp32 <= FP32_WORDS_PER_THREAD and (acc_budget is None or acc <= acc_budget)

    # Fallback: the smallest pipeline (fewest stages x tile bytes); in the sweep it is also spill-free,
    # where ranking by the register estimate picked a 3.5 KB spiller (fp32 SDDMM, 128 blocks, sm_80).
    return [c for c in configs if ok(c)] or [min(configs, key=cost)]

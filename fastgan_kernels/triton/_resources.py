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
* **fp32 registers**: fp32 dots are exact (``input_precision="ieee"``) and run on FMAs, which read
  both operand tiles from registers; the accumulator and the operand fragments per thread,
  ``(BM*BK + BK*BN + BM*BN) / (32 * num_warps)`` 32-bit words, must stay within
  :data:`FP32_WORDS_PER_THREAD` or ptxas spills (the measured threshold, docs/gpu_resources.md).

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
    120: 101_376,  # RTX 50xx
}
FP32_WORDS_PER_THREAD = 96

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


def fits(cfg, stage_bytes: int, limit: int) -> bool:
    """The config's software pipeline (``num_stages`` copies of one K step's tiles) fits ``limit``."""
    return cfg.num_stages * stage_bytes <= limit


def fp32_words(tiles_elems: int, num_warps: int) -> float:
    """32-bit registers per thread that an FMA dot's operand and accumulator tiles take."""
    return tiles_elems / (32 * num_warps)


def keep(configs: list, stage_bytes, limit: int, fp32_tiles=None) -> list:
    """The configs within budget. ``stage_bytes(cfg)``: bytes one K step loads; ``fp32_tiles(cfg)``:
    elements of A + B + accumulator for fp32 FMA dots (None for tensor-core dtypes). When nothing
    fits (a tiny budget), the cheapest config is kept so the kernel still has one to run."""
    def cost(cfg):
        words = fp32_words(fp32_tiles(cfg), cfg.num_warps) if fp32_tiles else 0.0
        return cfg.num_stages * stage_bytes(cfg), words

    ok = [c for c in configs
          if fits(c, stage_bytes(c), limit) and cost(c)[1] <= FP32_WORDS_PER_THREAD]
    return ok or [min(configs, key=cost)]

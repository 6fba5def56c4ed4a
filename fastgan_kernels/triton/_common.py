"""Launch-side helpers and @triton.jit utilities shared by every fastgan Triton kernel.

* ``INTERPRET``: whether Triton runs in its interpreter (``TRITON_INTERPRET=1``, read at import
  as triton does): kernels then use one small config instead of autotuning, and work around the
  interpreter's bf16 dot (``f32_dot``).
* ``tune_key``: the power-of-two bucket a batch-like size is autotuned under.
* ``pow2_cap``: the smallest tl.dot-compatible block covering a size (config pruning).
* ``grouped_tile_ids``: grouped program ordering (GROUP_M tile-rows visited column by column)
  for L2 reuse, as in Triton's matmul tutorial.
* ``device_guard``: launch on the tensor's CUDA device.
"""
import contextlib
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


def tune_key(n: int) -> int:
    """A batch-like size as an autotune key: the next power of two. Keyed on the exact size, every
    new batch (the last one of an epoch, a sample of 17 images) would re-run the whole autotune
    sweep; sizes within a factor of two share one tuned config (the configs are pruned by
    ``pow2_cap``, which is constant over a bucket, so the pick stays valid)."""
    return triton.next_power_of_2(max(int(n), 1))


def pow2_cap(n: int) -> int:
    """Smallest usable block (>= 16, tl.dot's minimum) covering n."""
    return max(16, triton.next_power_of_2(int(n)))


@triton.jit
def grouped_tile_ids(pid, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    """Map a linear program id to (tile row, tile col), visiting GROUP_M tile-rows column by column."""
    tiles_m = tl.cdiv(M, BLOCK_M)
    tiles_n = tl.cdiv(N, BLOCK_N)
    per_group = GROUP_M * tiles_n
    first_m = (pid // per_group) * GROUP_M
    rows_here = tl.minimum(tiles_m - first_m, GROUP_M)  # the last group may be short
    within = pid % per_group
    return first_m + within % rows_here, within // rows_here


def device_guard(t: Tensor):
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def f32_dot(dtype: torch.dtype) -> bool:
    # Triton's interpreter multiplies bf16 tiles as their raw uint16 bits (triton 3.9), so there bf16
    # operands are upcast first: exact products, same fp32 accumulation. GPUs use bf16 tensor cores.
    return dtype == torch.float32 or (INTERPRET and dtype == torch.bfloat16)

"""Mixed precision for training: bf16 autocast on CPU, fp16 autocast + GradScaler on GPU.

The fastgan ops follow ``torch.autocast`` themselves (fastgan_kernels/ops/_autocast.py): inside
an autocast region a fused or block-sparse layer casts x, weight and bias to the autocast dtype,
as ``F.linear`` does, and its gradients reach the fp32 master weights in fp32. This module only
chooses the recipe per device.
"""
from __future__ import annotations

from typing import Optional

import torch


def amp_settings(device: torch.device, enabled: bool) -> tuple[bool, Optional[torch.dtype], bool]:
    """(autocast on?, its dtype, use a GradScaler?) for ``device``: bf16 on CPU (no scaler: bf16 has
    fp32's range), fp16 + scaler on CUDA (fp16 gradients underflow without loss scaling)."""
    if not enabled:
        return False, None, False
    kind = torch.device(device).type
    if kind == "cuda":
        return True, torch.float16, True
    if kind == "cpu":
        return True, torch.bfloat16, False
    raise ValueError(f"amp: no mixed-precision recipe for device type {kind!r}")

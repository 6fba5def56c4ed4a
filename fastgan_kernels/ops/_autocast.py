"""Autocast for the fastgan ops: what ``torch.autocast`` does for ``F.linear``.

Inside an autocast region, x, the weight and the bias are cast to the region's dtype (bf16 on
CPU, fp16/bf16 on CUDA) before the op runs, so a fused layer behind an ``nn.Linear`` (which
hands it a bf16 activation) or in front of one works, and fused layers run in low precision
under autocast as ``nn.Linear`` does. The casts are autograd ops: gradients reach fp32 master
weights in fp32. Outside autocast nothing changes.
"""
from __future__ import annotations

from typing import Optional

import torch


_DEVICE_AWARE = hasattr(torch, "get_autocast_dtype")  # torch >= 2.4: one API for every device type
_any_enabled = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)  # a 0.1 us exit when all are off


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device``'s type, or None when autocast is off there."""
    kind = device.type if isinstance(device, torch.device) else torch.device(device).type
    if kind not in ("cpu", "cuda"):
        return None
    if _DEVICE_AWARE:
        if not torch.is_autocast_enabled(kind):
            return None
        return torch.get_autocast_dtype(kind)
    enabled = torch.is_autocast_cpu_enabled() if kind == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    return torch.get_autocast_cpu_dtype() if kind == "cpu" else torch.get_autocast_gpu_dtype()


def cast(x: torch.Tensor, *tensors: Optional[torch.Tensor]) -> tuple:
    """``(x, *tensors)`` cast to the autocast dtype of x's device when autocast is on there."""
    if not _any_enabled() or not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return (x, *tensors)
    dtype = autocast_dtype(x.device)
    if dtype is None:
        return (x, *tensors)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dtype) for t in (x, *tensors))

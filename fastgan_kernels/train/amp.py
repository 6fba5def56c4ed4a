"""Mixed precision for the fused layers: bf16 autocast on CPU, fp16 autocast + GradScaler on GPU.

``torch.autocast`` only knows PyTorch's own ops; the ``fastgan::fused_linear`` custom op has
no autocast rule, and its Python entry point requires x and weight of one dtype. So, in an
autocast region, an ``nn.Linear`` upstream hands a bf16 activation to a FusedLinear whose
weight is fp32 and the op refuses it; and a model of fused layers only would silently run
all in fp32. :func:`autocast_fused_layers` fixes both for training: it re-classes the
model's ``FusedLinear`` / masked ``BlockSparseLinear`` modules (in place, same parameters,
same ``state_dict`` keys, still ``isinstance`` of their class) to variants that, when
autocast is on for the input's device, cast x, the weight and the bias to the autocast
dtype and call the same op -- what autocast does for ``nn.Linear``. The casts are autograd
ops, so gradients reach the fp32 master weights in fp32. Outside autocast they are the
plain modules.

(The proper home of this rule is the op itself -- a ``torch.library.register_autocast`` plus
a dtype check that allows it; until then it lives here, for training only.)
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..nn import BlockSparseLinear, FusedLinear
from ..ops import fused_linear


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype active for ``device``'s type, or None when autocast is off there."""
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def _cast(t: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    return None if t is None else t.to(dtype)


class AutocastFusedLinear(FusedLinear):
    """FusedLinear that follows autocast (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = autocast_dtype(x.device)
        if dtype is None:
            return super().forward(x)
        return fused_linear(x.to(dtype), self.weight.to(dtype), _cast(self.bias, dtype), self.activation,
                            self.negative_slope, self.backend)


class AutocastBlockSparseLinear(BlockSparseLinear):
    """BlockSparseLinear that follows autocast in masked mode (the mode gradual pruning trains in)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = autocast_dtype(x.device)
        if dtype is None:
            return super().forward(x)
        if self.mode != "masked":  # BSR kernels: run in the stored dtype
            return super().forward(x.to(self.values.dtype))
        return fused_linear(x.to(dtype), self.dense_weight().to(dtype), _cast(self.bias, dtype), self.activation,
                            self.negative_slope, self.backend)


_VARIANTS = {FusedLinear: AutocastFusedLinear, BlockSparseLinear: AutocastBlockSparseLinear}


def autocast_fused_layers(model: nn.Module) -> nn.Module:
    """Re-class the fused layers of ``model`` in place so they follow autocast; returns ``model``."""
    for m in model.modules():
        variant = _VARIANTS.get(type(m))
        if variant is not None:
            m.__class__ = variant
    return model


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

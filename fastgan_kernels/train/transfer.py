"""Transfer learning: start from a trained checkpoint, freeze the first k generator layers, fine-tune.

Why freeze the *first* layers: in an MLP generator the early layers turn the latent into
generic features (strokes, blobs), the late ones place them into a particular dataset's
images; on a small new dataset (e.g. a few digit classes) fine-tuning only the late layers
keeps the learned features and avoids over-fitting, with fewer parameters to update.

Freezing sets ``requires_grad=False`` on the layer's weight and bias (the optimiser is built
from trainable parameters only, and DDP ignores frozen ones); the label embedding of a
conditional generator stays trainable (the new dataset may use other classes).
"""
from __future__ import annotations

import re
from typing import Mapping, Optional

import torch
from torch import nn

from ..ops import bsr
from .build import generator_layers

_MASK = re.compile(r"(.*)block_mask$")


def dense_state_dict(state: Mapping[str, torch.Tensor],
                     shapes: Optional[Mapping[str, tuple]] = None) -> dict[str, torch.Tensor]:
    """A state_dict with every pruned layer made dense: ``weight * mask`` (masked mode) or the
    dense matrix of ``values/row_ptr/col_idx`` (BSR), masks and BSR indices dropped.

    So a generator trained with pruning in the loop (or a compressed one) initialises a
    dense model for further training.
    """
    out = dict(state)
    for key in list(state):
        match = _MASK.fullmatch(key)
        if match:
            prefix = match.group(1)
            weight, mask = state[prefix + "weight"], state[key]
            bn, bk = -(-weight.shape[0] // mask.shape[0]), -(-weight.shape[1] // mask.shape[1])
            out[prefix + "weight"] = weight * bsr.expand_mask(mask, tuple(weight.shape), _pow2((bn, bk))).to(weight.dtype)
            del out[key]
        elif key.endswith("row_ptr"):
            prefix = key[: -len("row_ptr")]
            values, row_ptr, col_idx = state[prefix + "values"], state[key], state[prefix + "col_idx"]
            shape = (shapes or {}).get(prefix + "weight") or _bsr_shape(values, row_ptr, col_idx)
            out[prefix + "weight"] = bsr.to_dense(values, row_ptr, col_idx, tuple(shape))
            for k in ("values", "row_ptr", "col_idx"):
                del out[prefix + k]
    return out


def _pow2(block: tuple[int, int]) -> tuple[int, int]:
    return tuple(1 << (b - 1).bit_length() for b in block)  # the grid size rounds up to the block


def _bsr_shape(values, row_ptr, col_idx) -> tuple[int, int]:
    bn, bk = values.shape[1:]
    nbc = int(col_idx.max()) + 1 if col_idx.numel() else 1
    return (row_ptr.numel() - 1) * bn, nbc * bk


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """``model.load_state_dict(state)``, densifying a pruned source first when ``model`` is dense."""
    own = model.state_dict()
    if not any(k.endswith(("block_mask", "row_ptr")) for k in own):
        state = dense_state_dict(state, {k: tuple(v.shape) for k, v in own.items() if k.endswith("weight")})
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the checkpoint's {what} does not fit this architecture: {exc}") from exc


def freeze_generator_layers(g: nn.Module, k: int) -> list[str]:
    """Freeze G's first ``k`` weight layers (in forward order); returns their names."""
    layers = generator_layers(g)
    if k > len(layers):
        raise ValueError(f"freeze_g_layers={k}, but the generator has only {len(layers)} layers")
    names = []
    for name, layer in layers[:k]:
        for p in layer.parameters(recurse=False):
            p.requires_grad_(False)
        names.append(name)
    return names


def trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]

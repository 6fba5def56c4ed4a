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

from .build import generator_layers

_MASK = re.compile(r"(.*)block_mask$")


def dense_state_dict(state: Mapping[str, torch.Tensor],
                     shapes: Optional[Mapping[str, tuple]] = None) -> dict[str, torch.Tensor]:
    """A state_dict with every pruned layer made dense: ``weight * mask`` (masked mode) or the
    dense matrix of ``values/row_ptr/col_idx`` (BSR), masks and BSR indices dropped.

    So a generator trained with pruning in the loop (or a compressed one) initialises a
    dense model for further training. ``shapes`` (key -> (N, K)) gives the dense shape of BSR
    weights (else whole blocks). Works on the documented tensor layouts of BlockSparseLinear.
    """
    out = dict(state)
    for key in list(state):
        match = _MASK.fullmatch(key)
        if match:
            prefix = match.group(1)
            weight, mask = state[prefix + "weight"], state[key]
            out[prefix + "weight"] = weight * _expand(mask, tuple(weight.shape)).to(weight.dtype)
            del out[key]
        elif key.endswith("row_ptr"):
            prefix = key[: -len("row_ptr")]
            values, row_ptr, col_idx = state[prefix + "values"], state[key], state[prefix + "col_idx"]
            shape = (shapes or {}).get(prefix + "weight")
            out[prefix + "weight"] = _bsr_to_dense(values, row_ptr, col_idx, shape)
            for k in ("values", "row_ptr", "col_idx"):
                del out[prefix + k]
    return out


def _expand(mask: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Block mask [nbr, nbc] -> element mask [N, K]. Blocks are powers of two and the grid is
    ceil(N / bn), so bn is the power of two >= ceil(N / nbr) (any such one when nbr == 1)."""
    bn, bk = (1 << (-(-n // g) - 1).bit_length() for n, g in zip(shape, mask.shape))
    return mask.repeat_interleave(bn, 0).repeat_interleave(bk, 1)[: shape[0], : shape[1]]


def _bsr_to_dense(values, row_ptr, col_idx, shape: Optional[tuple]) -> torch.Tensor:
    """BSR (values [nnz, bn, bk], row_ptr [nbr + 1], col_idx [nnz]) -> dense [N, K]."""
    nnz, bn, bk = values.shape
    nbr = row_ptr.numel() - 1
    nbc = -(-shape[1] // bk) if shape else (int(col_idx.max()) + 1 if nnz else 1)
    rows = torch.repeat_interleave(torch.arange(nbr, device=values.device), (row_ptr[1:] - row_ptr[:-1]).long())
    blocks = values.new_zeros(nbr, nbc, bn, bk)
    blocks[rows, col_idx.long()] = values
    dense = blocks.transpose(1, 2).reshape(nbr * bn, nbc * bk)
    return dense[: shape[0], : shape[1]] if shape else dense


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """``model.load_state_dict(state)`` for transfer: a pruned source (masked or BSR) is densified
    first; a masked-pruning model keeps its own masks (pruning starts again from the weights)."""
    own = model.state_dict()
    state = dense_state_dict(state, {k: tuple(v.shape) for k, v in own.items() if k.endswith("weight")})
    # a masked model (pruning run) starts from the dense weights with its current (full) masks
    state.update({k: v for k, v in own.items() if k.endswith("block_mask")})
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

"""BlockSparseLinear: a Linear (+ activation) whose weight is pruned in blocks.

Two modes:

* ``masked`` (fine-tuning): a dense ``weight`` and a ``block_mask`` [nbr, nbc]; the forward
  uses ``weight * mask`` through the fused dense kernel, so pruned blocks get no gradient and
  the mask can change while training (gradual pruning).
* ``bsr`` (inference, and fine-tuning of the kept blocks): ``values`` [nnz_blocks, bn, bk]
  with ``row_ptr``/``col_idx``, run by the block-sparse kernels, which never read a pruned
  block.

``to_bsr()`` / ``to_masked()`` switch in place; ``state_dict`` holds the current mode's
tensors, and ``load_state_dict`` accepts either mode's (switching to it).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .. import activations, backends
from ..ops import _autocast, _validate, bsr
from ..ops import block_sparse_linear as bsl
from ..ops.fused_linear import fused_linear
from .fused_linear import FusedLinear

_MASKED_KEYS = ("weight", "block_mask")
_BSR_KEYS = ("values", "row_ptr", "col_idx")


class BlockSparseLinear(nn.Module):
    """``act(x @ W.T + bias)`` with ``W`` pruned in ``block = (bn, bk)`` blocks."""

    def __init__(self, in_features: int, out_features: int, block=(32, 32), bias: bool = True,
                 activation: str = "leaky_relu", negative_slope: Optional[float] = None, backend: str = "auto",
                 device=None, dtype=None, *, alpha: Optional[float] = None):
        super().__init__()
        linear = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_from(linear, bsr.check_block(block), activation, negative_slope, backend, alpha)

    def _init_from(self, linear: nn.Linear, block, activation, negative_slope, backend, alpha=None):
        # negative_slope holds the activation's parameter: LeakyReLU's slope or ELU's alpha
        negative_slope = activations.resolve_param(activation, negative_slope, alpha)
        act = activations.check_activation(activation, negative_slope)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.block = block
        self.activation, self.negative_slope = activations.name(act), float(negative_slope)
        self.backend = backends.check_backend(backend)
        self.mode = "masked"
        self.weight = linear.weight
        nbr, nbc = bsr.grid((self.out_features, self.in_features), block)
        self.register_buffer("block_mask", torch.ones(nbr, nbc, dtype=torch.bool, device=linear.weight.device))
        if linear.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = linear.bias

    @classmethod
    def from_dense(cls, linear: nn.Linear, block=(32, 32), sparsity: Optional[float] = None,
                   block_mask: Optional[torch.Tensor] = None, activation: str = "identity",
                   negative_slope: Optional[float] = None, backend: str = "auto", mode: str = "bsr", *,
                   alpha: Optional[float] = None) -> "BlockSparseLinear":
        """Prune ``linear`` (sharing its parameters in masked mode).

        Keeps the blocks of ``block_mask`` or, given ``sparsity``, the strongest blocks by L2
        norm; with neither, keeps every non-zero block.
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        if mode not in ("bsr", "masked"):
            raise ValueError(f"mode must be 'bsr' or 'masked', got {mode!r}")
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._init_from(linear, bsr.check_block(block), activation, negative_slope, backend, alpha)
        if block_mask is not None and sparsity is not None:
            raise ValueError("pass block_mask or sparsity, not both")
        if block_mask is None:
            norms = module.block_norms()
            block_mask = norms > 0 if sparsity is None else keep_strongest(norms, sparsity)
        module.set_mask(block_mask)
        module.train(linear.training)
        return module.to_bsr() if mode == "bsr" else module

    # --- masks -------------------------------------------------------------------------
    def block_norms(self) -> torch.Tensor:
        """L2 norm of every block of the current (masked) weight."""
        return bsr.block_norms(self.dense_weight(), self.block)

    def set_mask(self, block_mask: torch.Tensor) -> None:
        """Replace the block mask (masked mode)."""
        self._require("masked", "set_mask")
        if tuple(block_mask.shape) != tuple(self.block_mask.shape):
            raise ValueError(f"block_mask must have shape {tuple(self.block_mask.shape)}, got {tuple(block_mask.shape)}")
        self.block_mask.copy_(block_mask.to(torch.bool))

    @property
    def nnz_blocks(self) -> int:
        return int(self.block_mask.sum()) if self.mode == "masked" else int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        nbr, nbc = bsr.grid((self.out_features, self.in_features), self.block)
        return 1.0 - self.nnz_blocks / (nbr * nbc)

    # --- modes -------------------------------------------------------------------------
    def _require(self, mode: str, what: str) -> None:
        if self.mode != mode:
            raise RuntimeError(f"{what} needs {mode} mode; this module is in {self.mode} mode")

    def dense_weight(self) -> torch.Tensor:
        """The dense [N, K] weight with pruned blocks zeroed."""
        if self.mode == "bsr":
            return bsr.to_dense(self.values, self.row_ptr, self.col_idx, (self.out_features, self.in_features))
        mask = bsr.expand_mask(self.block_mask, (self.out_features, self.in_features), self.block)
        return self.weight * mask.to(self.weight.dtype)

    def bsr_weight(self) -> bsr.BsrWeight:
        if self.mode == "bsr":
            return bsr.BsrWeight(self.values, self.row_ptr, self.col_idx, (self.out_features, self.in_features))
        return bsr.BsrWeight.from_dense(self.weight.detach(), self.block, self.block_mask)

    def to_bsr(self) -> "BlockSparseLinear":
        """Switch to BSR mode in place (only the kept blocks remain); returns self."""
        if self.mode == "bsr":
            return self
        w, requires_grad = self.bsr_weight(), self.weight.requires_grad
        del self.weight, self.block_mask
        self.values = nn.Parameter(w.values, requires_grad=requires_grad)
        self.register_buffer("row_ptr", w.row_ptr)
        self.register_buffer("col_idx", w.col_idx)
        self.mode = "bsr"
        return self

    def to_masked(self) -> "BlockSparseLinear":
        """Switch to masked mode in place (dense weight + mask, for further pruning); returns self."""
        if self.mode == "masked":
            return self
        mask = bsr.BsrWeight(self.values, self.row_ptr, self.col_idx,
                             (self.out_features, self.in_features)).block_mask()
        weight = self.dense_weight().detach().clone()
        del self.values, self.row_ptr, self.col_idx
        self.weight = nn.Parameter(weight)
        self.register_buffer("block_mask", mask)
        self.mode = "masked"
        return self

    def to_dense(self) -> FusedLinear:
        """A dense FusedLinear (same activation) holding the pruned weight."""
        layer = FusedLinear(self.in_features, self.out_features, self.bias is not None, self.activation,
                            self.negative_slope, self.backend, device=self._device(), dtype=self._dtype())
        with torch.no_grad():
            layer.weight.copy_(self.dense_weight())
            if self.bias is not None:
                layer.bias.copy_(self.bias)
        return layer

    def _device(self):
        return (self.weight if self.mode == "masked" else self.values).device

    def _dtype(self):
        return (self.weight if self.mode == "masked" else self.values).dtype

    # --- forward -----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "masked":
            return fused_linear(x, self.dense_weight(), self.bias, self.activation, self.negative_slope, self.backend)
        x, values, bias = _autocast.cast(x, self.values, self.bias)
        if not isinstance(x, torch.Tensor) or x.dtype != values.dtype or x.device != values.device or (
                x.dim() < 1 or x.shape[-1] != self.in_features):  # the kernels trust their inputs: say what is wrong
            bsl.check_args(x, values, self.row_ptr, self.col_idx, bias, self.out_features)
            _validate.check_input(x, self.in_features, "BlockSparseLinear")
        return bsl.apply(x, values, self.row_ptr, self.col_idx, bias, self.out_features, self.activation,
                         self.negative_slope, self.backend)

    # --- state_dict in either mode -----------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        has = {key for key in _MASKED_KEYS + _BSR_KEYS if prefix + key in state_dict}
        if has >= set(_BSR_KEYS):
            if self.mode == "masked":
                self.to_bsr()
            values = state_dict[prefix + "values"]
            if tuple(values.shape[1:]) != self.block:
                self.block = bsr.check_block(tuple(values.shape[1:]))
            self.values = nn.Parameter(torch.empty_like(values, device=self._device(), dtype=self._dtype()))
            self.row_ptr = torch.empty_like(state_dict[prefix + "row_ptr"], device=self._device())
            self.col_idx = torch.empty_like(state_dict[prefix + "col_idx"], device=self._device())
        elif has >= set(_MASKED_KEYS) and self.mode == "bsr":
            self.to_masked()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if self.mode == "bsr" and not error_msgs:
            bsr.check_indices(self.values, self.row_ptr, self.col_idx, (self.out_features, self.in_features),
                              f"{type(self).__name__}.load_state_dict")

    def extra_repr(self) -> str:
        act = activations.describe(self.activation, self.negative_slope)
        return (f"in_features={self.in_features}, out_features={self.out_features}, block={self.block}, "
                f"sparsity={self.sparsity:.2f}, mode={self.mode}, bias={self.bias is not None}, "
                f"activation={act}, backend={self.backend}")


def keep_strongest(norms: torch.Tensor, sparsity: float, min_keep: int = 1) -> torch.Tensor:
    """Boolean mask keeping the ``round((1 - sparsity) * n)`` largest ``norms`` (at least ``min_keep``)."""
    check_sparsity(sparsity)
    keep = max(min_keep, int(round((1.0 - sparsity) * norms.numel())))
    keep = min(keep, norms.numel())
    flat = torch.zeros(norms.numel(), dtype=torch.bool, device=norms.device)
    flat[torch.topk(norms.flatten().float(), keep, sorted=False).indices] = True
    return flat.view(norms.shape)


def check_sparsity(sparsity) -> float:
    if (not isinstance(sparsity, (int, float)) or isinstance(sparsity, bool) or math.isnan(sparsity)
            or not 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
    return float(sparsity)

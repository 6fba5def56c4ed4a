"""BlockSparseInt8Linear: a block-pruned Linear (+ activation) with int8 weights, kept sparse.

The int8 twin of a BSR-mode :class:`BlockSparseLinear`: the kept blocks quantised per output
channel, run by ``fastgan::block_sparse_int8_linear`` (pruned blocks are never stored or read).
It behaves as :class:`Int8Linear` does: float input quantised per token (``input_quant="dynamic"``)
or with the calibrated ``input_scale`` (``"static"``), or an int8 input already quantised with
``input_scale``; float output, or int8 requantised with ``output_scale`` for the next layer.

Buffers (all in ``state_dict``): ``values`` int8 [nnz_blocks, bn, bk], ``row_ptr``, ``col_idx``
(int32, as in BlockSparseLinear), ``weight_scale`` [N], ``bias`` [N] (fp32), ``input_scale`` and
``output_scale`` ([1], NaN when unused). ``load_state_dict`` takes any number of kept blocks (the
buffers are resized); the backend's packed weight is derived (re-made after ``.to()`` and loading).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..ops import _validate, bsr
from ..ops import block_sparse_int8_linear as bsi
from .block_sparse_linear import BlockSparseLinear
from .int8_linear import Int8Linear

_SPARSE_KEYS = ("values", "row_ptr", "col_idx")


class BlockSparseInt8Linear(nn.Module):
    """``act(x @ W.T + b)`` with ``W`` int8 per output channel, pruned in ``block = (bn, bk)`` blocks."""

    def __init__(self, in_features: int, out_features: int, block=(32, 32), bias: bool = True,
                 activation: str = "identity", negative_slope: float = 0.2, input_quant: str = "dynamic",
                 out_dtype: torch.dtype = torch.float32, backend: str = "auto", device=None,
                 check_finite: bool = True):
        super().__init__()
        self._init_int8(in_features, out_features, activation, negative_slope, input_quant, out_dtype, backend,
                        check_finite)
        self.block = bsr.check_block(block)
        nbr, _ = bsr.grid((out_features, in_features), self.block)
        # No kept block until a weight is set (from_block_sparse, load_state_dict): y = act(bias).
        self.register_buffer("values", torch.zeros(0, *self.block, dtype=torch.int8, device=device))
        self.register_buffer("row_ptr", torch.zeros(nbr + 1, dtype=torch.int32, device=device))
        self.register_buffer("col_idx", torch.zeros(0, dtype=torch.int32, device=device))
        self._init_scales(bias, device)

    # The settings and the scale handling are Int8Linear's (same buffers, same rules).
    _init_int8 = Int8Linear._init_int8
    _init_scales = Int8Linear._init_scales
    set_scales = Int8Linear.set_scales
    _derive_flags = Int8Linear._derive_flags
    _output_args = Int8Linear._output_args
    int8_output = Int8Linear.int8_output

    @classmethod
    def from_block_sparse(cls, layer: BlockSparseLinear, input_quant: str = "dynamic",
                          input_scale: Optional[float] = None, output_scale: Optional[float] = None,
                          out_dtype: torch.dtype = torch.float32, backend: str = "auto") -> "BlockSparseInt8Linear":
        """Quantise a BlockSparseLinear's kept blocks per output channel (its activation kept)."""
        if not isinstance(layer, BlockSparseLinear):
            raise TypeError(f"layer must be a BlockSparseLinear, got {type(layer).__name__}")
        w = layer.bsr_weight()
        module = cls(layer.in_features, layer.out_features, layer.block, layer.bias is not None, layer.activation,
                     layer.negative_slope, input_quant, out_dtype, backend, device=w.values.device)
        module.set_weight(*bsi.quantize_bsr_weight(w.to(torch.float32)))
        if layer.bias is not None:
            module.bias.copy_(layer.bias.detach().float())
        module.set_scales(input_scale, output_scale)
        return module

    def set_weight(self, weight: bsr.BsrWeight, weight_scale: torch.Tensor) -> None:
        """Replace the int8 block-sparse weight (same shape and block) and its per-channel scales."""
        if weight.shape != (self.out_features, self.in_features) or weight.block != self.block:
            raise ValueError(f"weight must be [{self.out_features}, {self.in_features}] in {self.block} blocks, "
                             f"got {list(weight.shape)} in {weight.block} blocks")
        if weight.values.dtype != torch.int8:
            raise TypeError(f"weight values must be int8 (quantize_bsr_weight), got {weight.values.dtype}")
        self.values, self.row_ptr, self.col_idx = weight.values, weight.row_ptr, weight.col_idx
        self.weight_scale.copy_(weight_scale)
        self._repack()

    def bsr_weight(self) -> bsr.BsrWeight:
        return bsr.BsrWeight(self.values, self.row_ptr, self.col_idx, (self.out_features, self.in_features))

    @property
    def nnz_blocks(self) -> int:
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        nbr, nbc = bsr.grid((self.out_features, self.in_features), self.block)
        return 1.0 - self.nnz_blocks / (nbr * nbc)

    def _repack(self) -> None:
        try:
            self.weight_packed = bsi.pack_weight(self.bsr_weight(), self.backend)
        except RuntimeError:  # a forced backend unavailable on this device: forward will say why
            self.weight_packed = None

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._repack()
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if all(prefix + key in state_dict for key in _SPARSE_KEYS):  # any number of kept blocks
            values = state_dict[prefix + "values"]
            if tuple(values.shape[1:]) != self.block:
                self.block = bsr.check_block(tuple(values.shape[1:]))
            device = self.values.device
            self.values = torch.empty_like(values, device=device, dtype=torch.int8)
            self.row_ptr = torch.empty_like(state_dict[prefix + "row_ptr"], device=device)
            self.col_idx = torch.empty_like(state_dict[prefix + "col_idx"], device=device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if not error_msgs:
            bsr.check_indices(self.values, self.row_ptr, self.col_idx, (self.out_features, self.in_features),
                              f"{type(self).__name__}.load_state_dict")
        self._repack()
        self._derive_flags()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The module checked its own tensors when it was built or loaded; per call only x is checked.
        buf = self._buffers
        values = buf["values"]
        name = type(self).__name__
        _validate.check_tensor(x, f"{name}: x")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"{name}: x.shape[-1] must equal in_features = {self.in_features}, "
                             f"got x of shape {tuple(x.shape)}")
        if x.device != values.device:
            raise ValueError(f"{name}: x must be on the module's device {values.device}, got {x.device}")
        out_dtype, out_scale = self._output_args(x)
        if x.dtype == torch.int8:
            x_scale = buf["input_scale"]
        else:
            _validate.check_float(x, f"{name}: x")
            x_scale = None if self.input_quant == "dynamic" else buf["input_scale"]
        if x.numel() == 0:  # an empty batch gives an empty output, as nn.Linear does
            return x.new_empty((*x.shape[:-1], self.out_features), dtype=out_dtype)
        return bsi.run_block_sparse_int8_linear(x, x_scale, values, buf["row_ptr"], buf["col_idx"],
                                                buf["weight_scale"], buf["bias"], buf["weight_packed"],
                                                self.out_features, self.activation, self.negative_slope, out_dtype,
                                                out_scale, self.backend, self.check_finite)

    def dequantized_weight(self) -> torch.Tensor:
        """The dense [N, K] float weight the layer computes with (zeros in the pruned blocks)."""
        return self.bsr_weight().to_dense().float() * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        return Int8Linear.extra_repr(self).replace(
            "bias=", f"block={self.block}, sparsity={self.sparsity:.2f}, bias=", 1)

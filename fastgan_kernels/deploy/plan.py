"""Packing a found chain (discover.py) into the flat description ``fastgan::mlp_chain`` runs.

Each layer keeps its format: ``nn.Linear`` / ``FusedLinear`` -> dense fp32 (or bf16 with
``dtype=torch.bfloat16``), ``Int8Linear`` -> int8 dynamic or static (its packed CPU blob, made
once), ``BlockSparseLinear`` -> BSR fp32. The description's layout is documented in
``csrc/cpu/mlp_chain.cpp`` (codes in fastgan_kernels/ops/mlp_chain.py).

How each layer stores its output (the next layer's input) is decided here, once:
* int8 into a static int8 layer: int8, requantised in the epilogue with the next layer's
  input scale (no float round trip; the same numbers as quantising the float output);
* an Int8Linear that requantises its output itself (``output_scale``): int8, as the module does;
* into a bf16 layer: bf16 (so that layer runs the bf16 GEMM); otherwise float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import Tensor, nn

from .. import activations
from ..ops import mlp_chain as op
from ..ops.int8_linear import pack_weight
from .discover import Chain, ChainLayer, NotAChainError
from ..nn import BlockSparseLinear, FusedLinear, Int8Linear

_EMPTY = torch.empty(0)
FORMAT_NAMES = {op.DENSE_F32: "fp32", op.DENSE_BF16: "bf16", op.INT8_DYNAMIC: "int8 dynamic",
                op.INT8_STATIC: "int8 static", op.BSR_F32: "block-sparse fp32"}


@dataclasses.dataclass
class LayerPlan:
    name: str
    format: int
    n: int
    k: int
    act: int
    slope: float
    tensors: list[Tensor]           # four slots (see ops/mlp_chain.py)
    in_scale: float = 0.0           # static int8 input scale (or the scale of an int8 input)
    own_out_scale: float = math.nan  # an Int8Linear's output_scale (it requantises itself)
    store: int = op.STORE_F32
    out_scale: float = 1.0

    @property
    def is_int8(self) -> bool:
        return self.format in (op.INT8_DYNAMIC, op.INT8_STATIC)

    def weight_bytes(self) -> int:
        if self.format == op.BSR_F32:
            return self.tensors[0].numel() * 4
        return self.n * self.k * (4 if self.format == op.DENSE_F32 else 2 if self.format == op.DENSE_BF16 else 1)


def _act(layer: ChainLayer, own: str, own_slope: float) -> tuple[int, float]:
    """The activation code and slope of a layer: its own (fused) one or the one after it, not both."""
    if layer.act is not None and own != "identity":
        raise NotAChainError(f"compile_generator: layer `{layer.name}` applies {own} and is followed by "
                             f"{layer.act.name}; a layer takes one activation")
    name, slope = (layer.act.name, layer.act.negative_slope) if layer.act is not None else (own, own_slope)
    return int(activations.check_activation(name, slope)), float(slope)


def _bias(b: Optional[Tensor]) -> Tensor:
    return _EMPTY if b is None else b.detach().float().contiguous()


def _plan_layer(layer: ChainLayer, dense_dtype: torch.dtype) -> LayerPlan:
    m = layer.module
    if isinstance(m, (nn.Linear, FusedLinear)):
        act, slope = _act(layer, getattr(m, "activation", "identity"), getattr(m, "negative_slope", 0.0))
        if m.weight.dtype not in (torch.float32, torch.bfloat16):
            raise TypeError(f"compile_generator: layer `{layer.name}` has {m.weight.dtype} weights; "
                            f"float32 or bfloat16 expected")
        bf16 = dense_dtype == torch.bfloat16 or m.weight.dtype == torch.bfloat16
        w = m.weight.detach().to(torch.bfloat16 if bf16 else torch.float32).contiguous()
        return LayerPlan(layer.name, op.DENSE_BF16 if bf16 else op.DENSE_F32, m.out_features, m.in_features, act,
                         slope, [w, _bias(m.bias), _EMPTY, _EMPTY])
    if isinstance(m, Int8Linear):
        act, slope = _act(layer, m.activation, m.negative_slope)
        wq = m.weight_int8
        blob = m.weight_packed if m.weight_packed is not None and wq.device.type == "cpu" else None
        if blob is None and wq.device.type == "cpu":
            blob = pack_weight(wq, "cpu_ext")
        fmt = op.INT8_STATIC if m.input_quant == "static" else op.INT8_DYNAMIC
        plan = LayerPlan(layer.name, fmt, m.out_features, m.in_features, act, slope,
                         [blob if blob is not None else _EMPTY, m.weight_scale.float().contiguous(), _bias(m.bias), wq])
        if m._has_input_scale:
            plan.in_scale = float(m.input_scale.item())
        if m.int8_output:
            plan.own_out_scale = float(m.output_scale.item())
        return plan
    if isinstance(m, BlockSparseLinear):
        act, slope = _act(layer, m.activation, m.negative_slope)
        w = m.bsr_weight()
        values = w.values.detach().float().contiguous()
        return LayerPlan(layer.name, op.BSR_F32, m.out_features, m.in_features, act, slope,
                         [values, w.row_ptr.to(torch.int32).contiguous(), w.col_idx.to(torch.int32).contiguous(),
                          _bias(m.bias)])
    raise NotAChainError(f"compile_generator: layer `{layer.name}` ({type(m).__name__}) is not supported")


def _choose_stores(plans: list[LayerPlan]) -> None:
    for i, p in enumerate(plans):
        nxt = plans[i + 1] if i + 1 < len(plans) else None
        if nxt is None:
            p.store = op.STORE_F32  # the chain returns float32 (an int8 output_scale on the last layer is not applied)
        elif p.is_int8 and not math.isnan(p.own_out_scale):
            if not (nxt.is_int8 and nxt.in_scale > 0):
                raise NotAChainError(f"compile_generator: `{p.name}` outputs int8 but `{nxt.name}` is not an int8 "
                                     f"layer with an input_scale")
            p.store, p.out_scale = op.STORE_I8, p.own_out_scale
        elif p.is_int8 and nxt.format == op.INT8_STATIC:
            p.store, p.out_scale = op.STORE_I8, nxt.in_scale
        elif nxt.format == op.DENSE_BF16:
            p.store = op.STORE_BF16
        else:
            p.store = op.STORE_F32


def plan_chain(chain: Chain, dense_dtype: torch.dtype = torch.float32) -> list[LayerPlan]:
    if dense_dtype not in (torch.float32, torch.bfloat16):
        raise TypeError(f"compile_generator: dtype must be torch.float32 or torch.bfloat16, got {dense_dtype}")
    plans = [_plan_layer(layer, dense_dtype) for layer in chain.layers]
    for prev, p in zip(plans, plans[1:]):
        if p.k != prev.n:
            raise NotAChainError(f"compile_generator: `{p.name}` takes {p.k} features but `{prev.name}` gives {prev.n}")
        if p.format == op.INT8_STATIC and not p.in_scale > 0:
            raise NotAChainError(f"compile_generator: static int8 layer `{p.name}` has no input_scale")
    if plans[0].format == op.INT8_STATIC and not plans[0].in_scale > 0:
        raise NotAChainError(f"compile_generator: static int8 layer `{plans[0].name}` has no input_scale")
    _choose_stores(plans)
    return plans


def describe(plans: list[LayerPlan]) -> tuple[list[Tensor], list[int], list[float]]:
    """The (tensors, meta, scalars) of ``fastgan::mlp_chain``."""
    tensors, meta, scalars = [], [], []
    for p in plans:
        tensors += p.tensors
        meta += [p.format, p.n, p.k, p.act, p.store, 0]
        scalars += [p.slope, p.in_scale, p.out_scale]
    return tensors, meta, scalars

"""``quantize(model, calibration=..., mode=...)``: Linear (+ activation) layers become Int8Linear.

* ``mode="dynamic"``: weights int8 per output channel, activations quantised per token at run
  time; each layer takes and returns float.
* ``mode="static"``: activation scales come from calibration batches (``observer="max"``: the
  largest |x| seen; ``"percentile"``: that percentile of |x|, which ignores rare outliers).
  Inside an ``nn.Sequential``, consecutive int8 layers hand int8 tensors to each other: each
  layer's epilogue requantises its output with the next layer's input scale, so there is no
  float round trip; the first layer quantises its float input and the last writes float.

The report gives each layer's SQNR on the calibration data (the int8 layer against its float
original on the same float input) and the SQNR of the whole model's output.

Pruned models stay sparse: each ``BlockSparseLinear`` (from ``prune``) becomes a
``BlockSparseInt8Linear`` (its kept blocks in int8, pruned blocks never stored or read), or a dense
``Int8Linear`` holding the pruned weight when it is pruned less than the int8 break-even sparsity
(``prune.INT8_BREAK_EVEN_SPARSITY``; ``sparse=`` overrides the rule). ``convert.compress`` does
both steps in one call.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Iterable, Optional

import torch
from torch import nn

from .. import metrics
from ..nn.block_sparse_int8_linear import BlockSparseInt8Linear
from ..nn.block_sparse_linear import BlockSparseLinear
from ..nn.int8_linear import Int8Linear
from ._rewrite import Act, rewrite
from .explain import report as report_decisions
from .prune import INT8_BREAK_EVEN_SPARSITY
from .report import Table

_MAX_SAMPLES = 1 << 20  # |x| values kept per layer for the percentile observer


@dataclasses.dataclass
class LayerQuantization:
    name: str
    shape: tuple[int, int]
    input_scale: Optional[float]
    output: str
    sqnr_db: Optional[float]
    sparsity: Optional[float] = None  # block sparsity of a BlockSparseInt8Linear (None: dense int8)


@dataclasses.dataclass
class QuantizeReport:
    mode: str
    observer: str
    layers: list[LayerQuantization]
    model_sqnr_db: Optional[float]
    skipped: list[str]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "observer": self.observer, "model_sqnr_db": self.model_sqnr_db,
                "skipped": self.skipped, "layers": [dataclasses.asdict(l) for l in self.layers]}

    def __str__(self) -> str:
        table = Table(["layer", "shape", "input", "output", "SQNR dB"])
        for l in self.layers:
            inp = "per-token" if l.input_scale is None else f"static {l.input_scale:.4g}"
            shape = f"{l.shape[0]}x{l.shape[1]}" + ("" if l.sparsity is None else f" sparse {l.sparsity:.2f}")
            table.add(l.name, shape, inp, l.output,
                      "-" if l.sqnr_db is None else f"{l.sqnr_db:.1f}")
        tail = "" if self.model_sqnr_db is None else f", model output SQNR {self.model_sqnr_db:.1f} dB"
        return f"{table}\n{self.mode} int8 ({self.observer} observer){tail}"


class _Observer:
    """Collects what calibration sees at one Linear: its float inputs' |x| statistics and (input, output) pairs."""

    def __init__(self, kind: str, percentile: float, keep_pairs: int):
        self.kind, self.percentile, self.keep_pairs = kind, percentile, keep_pairs
        self.amax = 0.0
        self.samples: list[torch.Tensor] = []
        self.pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, module, inputs, output):
        x = inputs[0].detach().float()
        self.amax = max(self.amax, float(x.abs().max()))
        if self.kind == "percentile":
            flat = x.abs().flatten()
            if flat.numel() > _MAX_SAMPLES // 8:
                flat = flat[torch.randint(flat.numel(), (_MAX_SAMPLES // 8,), device=flat.device)]
            self.samples.append(flat.cpu())
        if len(self.pairs) < self.keep_pairs:
            self.pairs.append((inputs[0].detach(), output.detach()))

    def scale(self) -> float:
        value = self.amax
        if self.kind == "percentile" and self.samples:
            flat = torch.cat(self.samples)
            k = max(1, min(flat.numel(), int(round(self.percentile / 100.0 * flat.numel()))))
            value = float(flat.kthvalue(k).values)
        return max(value, 1e-8) / 127.0


def _activation_fn(act: Act):
    from ..activations import apply

    return lambda t: apply(t, act.name, act.negative_slope)


def quantize(model: nn.Module, calibration: Optional[Iterable] = None, mode: str = "dynamic",
             observer: str = "max", percentile: float = 99.99, skip: Iterable[str] = (), backend: str = "auto",
             inplace: bool = False, verbose: bool = False, sparse="auto") -> tuple[nn.Module, QuantizeReport]:
    """Convert every Linear (+ activation) of ``model`` to :class:`Int8Linear`; returns (model, report).

    Args:
        calibration: batches (tensors, or tuples whose first item is the model input) run through
            the float model to collect activation scales (static) and the SQNR report.
        mode: "dynamic" (per-token activation scales at run time) or "static" (calibrated).
        observer: "max" or "percentile" (static mode).
        skip: glob patterns of module names to keep in float.
        verbose: print :func:`fastgan_kernels.explain`'s table for the conversion (always logged).
        sparse: for BlockSparseLinear layers: "auto" (sparse int8 from the int8 break-even sparsity
            up, dense int8 below), "always", "never", or the names of the layers that stay sparse.
    """
    if mode not in ("dynamic", "static"):
        raise ValueError(f"mode must be 'dynamic' or 'static', got {mode!r}")
    if observer not in ("max", "percentile"):
        raise ValueError(f"observer must be 'max' or 'percentile', got {observer!r}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    batches = [b[0] if isinstance(b, (tuple, list)) else b for b in (calibration or [])]
    if mode == "static" and not batches:
        raise ValueError("mode='static' needs calibration batches (an iterable of model inputs)")
    skip = (skip,) if isinstance(skip, str) else tuple(skip)

    # 1. Find the layers (names and activations) without converting anything yet.
    found: dict[str, tuple[nn.Linear, Act]] = {}

    def find(name, linear, act):
        if not any(fnmatch.fnmatchcase(name, p) for p in skip):
            found[name] = (linear, act)
        return None

    rewrite(model, find, lone_linear=True, inplace=True)
    skipped = [n for n, m in model.named_modules() if type(m) is nn.Linear and n not in found]
    pruned = {n: m for n, m in model.named_modules()
              if isinstance(m, BlockSparseLinear) and not any(fnmatch.fnmatchcase(n, p) for p in skip)}

    # 2. Calibrate the float model: inputs of every layer, float outputs for the SQNR report.
    observers = {name: _Observer(observer, percentile, keep_pairs=4) for name in found}
    observers.update({name: _Observer(observer, percentile, keep_pairs=4) for name in pruned})
    handles = [lin.register_forward_hook(observers[name]) for name, (lin, _) in found.items()]
    handles += [layer.register_forward_hook(observers[name]) for name, layer in pruned.items()]
    float_outputs = []
    try:
        with torch.no_grad():
            for batch in batches:
                float_outputs.append(model(batch))
    finally:
        for h in handles:
            h.remove()

    # 3. Convert.
    scales = {name: observers[name].scale() if batches else None for name in observers}
    converted: dict[str, nn.Module] = {}

    def make(name, linear, act):
        if name not in found:
            return None
        converted[name] = Int8Linear.from_linear(linear, act.name, act.negative_slope, mode,
                                                 scales[name] if mode == "static" else None, backend=backend)
        return converted[name]

    decisions: list = []
    qmodel = rewrite(model, make, lone_linear=True, inplace=inplace, decisions=decisions)
    report_decisions(decisions, "quantize", verbose)
    for name in pruned:  # the rewrite kept module names: the copies of the pruned layers are there
        converted[name] = _quantize_pruned(qmodel.get_submodule(name), name, sparse, mode,
                                           scales[name] if mode == "static" else None, backend)
        qmodel = _set_submodule(qmodel, name, converted[name])
    if mode == "static":
        _chain_sequentials(qmodel)

    # 4. Report: each layer on its own float inputs, and the whole model.
    rows = []
    with torch.no_grad():
        for name, layer in converted.items():
            linear, act = found[name] if name in found else (pruned[name], None)  # pruned: act inside
            pairs = observers[name].pairs
            sqnr = None
            if pairs:
                act_fn = _activation_fn(act) if act is not None else (lambda t: t)
                ref = torch.cat([act_fn(out.float()).flatten() for _, out in pairs])
                got = torch.cat([_dequant(layer, layer(inp)).flatten() for inp, _ in pairs])
                sqnr = metrics.sqnr(ref, got)
            rows.append(LayerQuantization(name, (linear.out_features, linear.in_features),
                                          scales[name] if mode == "static" else None,
                                          "int8" if layer.int8_output else "float", sqnr,
                                          layer.sparsity if isinstance(layer, BlockSparseInt8Linear) else None))
        model_sqnr = None
        if batches:
            got = torch.cat([qmodel(b).float().flatten() for b in batches])
            model_sqnr = metrics.sqnr(torch.cat([o.float().flatten() for o in float_outputs]), got)
    return qmodel, QuantizeReport(mode, observer if mode == "static" else "per-token", rows, model_sqnr, skipped)


def _quantize_pruned(layer: BlockSparseLinear, name: str, sparse, mode: str, input_scale, backend: str) -> nn.Module:
    """A pruned layer -> BlockSparseInt8Linear, or a dense Int8Linear below the break-even (see quantize)."""
    if sparse in ("auto", "always", "never"):
        threshold = INT8_BREAK_EVEN_SPARSITY.get(layer._device().type, 0.0)
        keep = sparse == "always" or (sparse == "auto" and layer.sparsity >= threshold)
    else:
        keep = name in set(sparse)
    if keep:
        return BlockSparseInt8Linear.from_block_sparse(layer, mode, input_scale, backend=backend)
    linear = nn.Linear(layer.in_features, layer.out_features, layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(layer.dense_weight())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return Int8Linear.from_linear(linear.to(layer.dense_weight().device), layer.activation, layer.negative_slope,
                                  mode, input_scale, backend=backend)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> nn.Module:
    """``model`` with its submodule ``name`` replaced (``module`` itself when name is "": the model)."""
    if not name:
        return module
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
    return model


def _dequant(layer: nn.Module, out: torch.Tensor) -> torch.Tensor:
    return out.float() * layer.output_scale if out.dtype == torch.int8 else out.float()


_INT8_LAYERS = (Int8Linear, BlockSparseInt8Linear)


def _chain_sequentials(model: nn.Module) -> None:
    """Inside each Sequential, make Int8Linear i requantise its output for Int8Linear j when only
    Identity slots (left by the converted activations) stand between them."""
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq)
        for i, layer in enumerate(children):
            if not isinstance(layer, _INT8_LAYERS):
                continue
            j = i + 1
            while j < len(children) and isinstance(children[j], nn.Identity):
                j += 1
            nxt = children[j] if j < len(children) else None
            if isinstance(nxt, _INT8_LAYERS) and nxt.input_quant == "static":
                layer.set_scales(layer.input_scale.item() if layer.input_quant == "static" else None,
                                 nxt.input_scale.item())

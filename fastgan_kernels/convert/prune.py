"""``prune(model, ...)``: Linear (+ activation) layers become BlockSparseLinear, with a report."""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Callable, Iterable, Union

import torch
from torch import nn

from ..nn.block_sparse_linear import BlockSparseLinear, check_sparsity, keep_strongest
from ..ops import bsr
from ._rewrite import Act, rewrite
from .explain import report as report_decisions
from .report import Table

# Sparsity below which the block-sparse kernels stop beating the dense fused kernel, per device.
# Measured by the block_sparse_sweep benchmark (block 32, fp32; benchmarks/test_block_sparse.py runs it
# too): the sparsity where the geomean over the shapes of the BSR kernel's speed-up over the dense fused
# kernel crosses 1x. Layers pruned less than this are flagged in the report.
# cpu: `fastgan-kernels bench --op block_sparse_sweep --full` (5 layers of the wide generator, sparsity
#      5%..75% in 5% steps, 2-core AMD EPYC / AVX512-VNNI path): 0.16 (per shape 0.08..0.28); the default
#      sweep in docs/benchmarks.md (2 shapes, 10% steps) gave 0.12. "cuda": not measured yet.
BREAK_EVEN_SPARSITY: dict[str, float] = {"cpu": 0.16}
# The same for int8 (BlockSparseInt8Linear vs the dense Int8Linear, block 32): quantize() keeps a pruned
# layer sparse from this sparsity up, dense int8 below. NOT MEASURED yet on a VNNI machine (the session
# that wrote the kernel had an AVX2-only CPU): an estimate, above the fp32 0.16 because the dense int8
# kernel runs its 48-column tiles near the VNNI peak while the sparse one walks 32-column tiles block by
# block. To measure: time `fastgan-kernels bench --op block_sparse_int8` style layers at 10-50% sparsity.
INT8_BREAK_EVEN_SPARSITY: dict[str, float] = {"cpu": 0.3}

Skip = Union[Iterable[str], Callable[[str, nn.Linear], bool]]


@dataclasses.dataclass
class LayerPruning:
    name: str
    shape: tuple[int, int]
    block: tuple[int, int]
    blocks_kept: int
    blocks_total: int
    bytes_before: int
    bytes_after: int
    note: str = ""

    @property
    def sparsity(self) -> float:
        return 1.0 - self.blocks_kept / self.blocks_total


@dataclasses.dataclass
class PruneReport:
    """What prune() did, per layer; ``str(report)`` is a table."""

    layers: list[LayerPruning]
    target_sparsity: float
    scope: str
    skipped: list[str]

    @property
    def sparsity(self) -> float:
        """Achieved block sparsity over all pruned layers (weighted by block count)."""
        total = sum(l.blocks_total for l in self.layers)
        return 1.0 - sum(l.blocks_kept for l in self.layers) / total if total else 0.0

    @property
    def bytes_before(self) -> int:
        return sum(l.bytes_before for l in self.layers)

    @property
    def bytes_after(self) -> int:
        return sum(l.bytes_after for l in self.layers)

    def to_dict(self) -> dict:
        return {"target_sparsity": self.target_sparsity, "scope": self.scope, "sparsity": self.sparsity,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after, "skipped": self.skipped,
                "layers": [dict(dataclasses.asdict(l), sparsity=l.sparsity) for l in self.layers]}

    def __str__(self) -> str:
        table = Table(["layer", "shape", "block", "kept/total", "sparsity", "bytes before", "bytes after", "note"])
        for l in self.layers:
            table.add(l.name, f"{l.shape[0]}x{l.shape[1]}", f"{l.block[0]}x{l.block[1]}",
                      f"{l.blocks_kept}/{l.blocks_total}", f"{l.sparsity:.3f}", f"{l.bytes_before:,}",
                      f"{l.bytes_after:,}", l.note)
        skipped = f"; skipped: {', '.join(self.skipped)}" if self.skipped else ""
        return (f"{table}\n{self.scope} scope, target {self.target_sparsity:.3f}, achieved {self.sparsity:.3f}, "
                f"{self.bytes_before:,} -> {self.bytes_after:,} bytes{skipped}")


def _skipper(skip: Skip) -> Callable[[str, nn.Linear], bool]:
    if callable(skip):
        return skip
    if isinstance(skip, str):
        skip = (skip,)
    patterns = tuple(skip)
    return lambda name, _: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _break_even_note(sparsity: float, device: torch.device) -> str:
    threshold = BREAK_EVEN_SPARSITY.get(torch.device(device).type)
    if threshold is not None and sparsity < threshold:
        return f"below {threshold:.2f}: slower than dense on {torch.device(device).type}"
    return ""


def prune(model: nn.Module, sparsity: float = 0.9, block=(32, 32), scope: str = "layer", skip: Skip = (),
          mode: str = "bsr", backend: str = "auto", inplace: bool = False,
          verbose: bool = False) -> tuple[nn.Module, PruneReport]:
    """Prune every Linear (+ following activation) of ``model`` in blocks; returns (model, report).

    Blocks are scored by their L2 norm and the strongest ``1 - sparsity`` are kept, per layer
    (``scope="layer"``) or over all pruned layers together (``"global"``); every layer keeps at
    least one block. ``skip`` names layers to leave dense (glob patterns on module names, or
    a predicate ``(name, linear) -> bool``). ``mode="bsr"`` gives inference-ready layers,
    ``"masked"`` layers for further fine-tuning (see :class:`GradualPruner`). An eval-mode
    BatchNorm1d after a Linear is folded into it first (blocks are scored on the folded weight).
    ``verbose`` prints :func:`fastgan_kernels.explain`'s table for the conversion (always logged).
    """
    sparsity = check_sparsity(sparsity)
    block = bsr.check_block(block)
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if mode not in ("bsr", "masked"):
        raise ValueError(f"mode must be 'bsr' or 'masked', got {mode!r}")
    skipped_fn = _skipper(skip)
    layers: dict[str, BlockSparseLinear] = {}
    skipped: list[str] = []

    def make(name: str, linear: nn.Linear, act: Act):
        if skipped_fn(name, linear):
            skipped.append(name)
            return None
        layers[name] = BlockSparseLinear.from_dense(linear, block, block_mask=torch.ones(
            bsr.grid((linear.out_features, linear.in_features), block), dtype=torch.bool),
            activation=act.name, negative_slope=act.negative_slope, backend=backend, mode="masked")
        return layers[name]

    decisions: list = []
    model = rewrite(model, make, lone_linear=True, inplace=inplace, decisions=decisions)
    report_decisions(decisions, "prune", verbose)
    apply_sparsity(layers, sparsity, scope)
    report_rows = []
    for name, layer in layers.items():
        dense_bytes = layer.weight.numel() * layer.weight.element_size()
        w = layer.bsr_weight()
        report_rows.append(LayerPruning(name, (layer.out_features, layer.in_features), block, layer.nnz_blocks,
                                        layer.block_mask.numel(), dense_bytes, w.nbytes,
                                        _break_even_note(layer.sparsity, layer.weight.device)))
        if mode == "bsr":
            layer.to_bsr()
    return model, PruneReport(report_rows, sparsity, scope, skipped)


def apply_sparsity(layers: dict[str, BlockSparseLinear], sparsity: float, scope: str = "layer") -> None:
    """Set the masks of masked-mode ``layers`` to keep their strongest blocks at ``sparsity``."""
    if not layers:
        return
    norms = {name: layer.block_norms() for name, layer in layers.items()}
    if scope == "layer":
        for name, layer in layers.items():
            layer.set_mask(keep_strongest(norms[name], sparsity))
        return
    flat = torch.cat([n.flatten().cpu() for n in norms.values()])
    keep = max(1, int(round((1.0 - sparsity) * flat.numel())))
    threshold = torch.topk(flat, keep).values.min()
    for name, layer in layers.items():
        mask = norms[name] >= threshold.to(norms[name].device)
        if not mask.any():  # every layer keeps its strongest block
            mask = keep_strongest(norms[name], 1.0 - 1.0 / norms[name].numel())
        layer.set_mask(mask)

"""``compress(model, sparsity=..., int8=...)``: prune in blocks, then quantise to int8, kept sparse.

The one documented way to get a block-sparse int8 model; it is exactly
``quantize(prune(model, sparsity, block)[0], calibration, mode)`` (each pruned layer becomes a
``BlockSparseInt8Linear``, or a dense ``Int8Linear`` below the int8 break-even sparsity), plus a
report that shows both steps and the PSNR of the result against the unpruned and the pruned
float models on the calibration batches.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Iterable, Optional

import torch
from torch import nn

from .. import metrics
from .prune import PruneReport, prune
from .quantize import QuantizeReport, quantize


@dataclasses.dataclass
class CompressReport:
    prune: Optional[PruneReport]
    quantize: Optional[QuantizeReport]
    psnr_db_vs_unpruned: Optional[float]     # the compressed model against the original float model
    psnr_db_vs_pruned: Optional[float]       # ... against the pruned float model (the int8 step alone)

    def to_dict(self) -> dict:
        return {"prune": self.prune.to_dict() if self.prune else None,
                "quantize": self.quantize.to_dict() if self.quantize else None,
                "psnr_db_vs_unpruned": self.psnr_db_vs_unpruned, "psnr_db_vs_pruned": self.psnr_db_vs_pruned}

    def __str__(self) -> str:
        parts = []
        if self.prune:
            parts.append(f"1. prune\n{self.prune}")
        if self.quantize:
            parts.append(f"{2 if self.prune else 1}. quantize\n{self.quantize}")
        db = lambda v: "-" if v is None else f"{v:.1f} dB"  # noqa: E731
        parts.append(f"PSNR of the compressed model: {db(self.psnr_db_vs_unpruned)} vs the unpruned float model, "
                     f"{db(self.psnr_db_vs_pruned)} vs the pruned float model")
        return "\n\n".join(parts)


def _outputs(model: nn.Module, batches: list) -> Optional[torch.Tensor]:
    if not batches:
        return None
    with torch.no_grad():
        return torch.cat([model(b).float().flatten() for b in batches])


def compress(model: nn.Module, sparsity: float = 0.9, block=(32, 32), int8: Optional[str] = "static",
             calibration: Optional[Iterable] = None, observer: str = "max", scope: str = "layer",
             skip: Iterable[str] = (), data_range: float = 2.0, backend: str = "auto") -> tuple[nn.Module, CompressReport]:
    """Prune ``model`` to ``sparsity`` in ``block`` blocks (0: no pruning), then quantise (``int8``: "static",
    "dynamic" or None); returns (a compressed copy, report).

    ``calibration``: model inputs, for the static scales and for the report's PSNR (``data_range`` is
    the outputs' range: 2 for a Tanh generator). The original model is not modified.
    """
    if int8 not in (None, "static", "dynamic"):
        raise ValueError(f"int8 must be 'static', 'dynamic' or None, got {int8!r}")
    batches = [b[0] if isinstance(b, (tuple, list)) else b for b in (calibration or [])]
    if int8 == "static" and not batches:
        raise ValueError("int8='static' needs calibration batches (an iterable of model inputs)")
    if not sparsity and int8 is None:
        raise ValueError("nothing to do: pass sparsity > 0 and/or int8")
    unpruned = _outputs(model, batches)
    out, prune_report = (prune(model, sparsity, block=block, scope=scope, skip=skip, backend=backend)
                         if sparsity else (copy.deepcopy(model), None))
    pruned = _outputs(out, batches) if sparsity else unpruned
    quant_report = None
    if int8 is not None:
        out, quant_report = quantize(out, calibration=batches, mode=int8, observer=observer, skip=skip,
                                     backend=backend, inplace=True)
    got = _outputs(out, batches)
    psnr = (lambda ref: None if ref is None else metrics.psnr(ref, got, data_range))  # noqa: E731
    return out, CompressReport(prune_report, quant_report, psnr(unpruned), psnr(pruned))


__all__ = ["compress", "CompressReport"]

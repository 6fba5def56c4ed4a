"""``explain(model)``: what each converter makes of every Linear of a model, and why.

The table comes from the converters' own pattern finder (:mod:`._rewrite`) run on a copy, so
it says exactly what ``fuse`` (or ``prune`` / ``quantize``) would do: what each Linear becomes
(with the activation fused into it and the BatchNorm folded into it), or why it is left alone
(followed by something that is not an activation, called twice, output used twice, weight
shared with a layer whose BatchNorm would be folded, unsupported dtype, module not traceable).
The converters log the same table (logger ``fastgan_kernels.convert`` at INFO; ``verbose=True``
prints it).
"""
from __future__ import annotations

import dataclasses
import logging

from torch import nn

from ._rewrite import Decision, rewrite
from .report import Table

log = logging.getLogger("fastgan_kernels.convert")

_LONE = {"fuse": False, "prune": True, "quantize": True}
_BUILDS = {"fuse": "FusedLinear", "prune": "BlockSparseLinear", "quantize": "Int8Linear"}


@dataclasses.dataclass
class Explanation:
    """One :class:`Decision` per ``nn.Linear``; ``str()`` is a table, ``print(explanation)`` shows it."""

    converter: str
    decisions: list[Decision]

    @property
    def converted(self) -> list[Decision]:
        return [d for d in self.decisions if d.became is not None]

    @property
    def left(self) -> list[Decision]:
        return [d for d in self.decisions if d.became is None]

    def __str__(self) -> str:
        return format_decisions(self.decisions, self.converter)

    def __repr__(self) -> str:
        return f"Explanation({self.converter}: {len(self.converted)} of {len(self.decisions)} Linear converted)"

    def to_dict(self) -> dict:
        return {"converter": self.converter, "layers": [
            {"name": d.name, "shape": list(d.shape), "dtype": d.dtype,
             "became": None if d.became is None else _kind(d.became),
             "activation": None if d.act is None else str(d.act), "folded": d.folded, "dropout": d.dropout,
             "reason": d.reason} for d in self.decisions]}


def format_decisions(decisions: list[Decision], converter: str) -> str:
    table = Table(["layer", "shape", "became", "activation", "BatchNorm folded", "why / note"])
    for d in decisions:
        became = _kind(d.became) if d.became is not None else "left as nn.Linear"
        note = d.reason
        if d.dropout:
            note = f"{note}; " if note else ""
            note += f"Dropout {d.dropout} applied after the fused activation"
        table.add(d.name or "(model)", f"{d.shape[1]}->{d.shape[0]} {d.dtype}", became,
                  "-" if d.act is None else str(d.act), d.folded or "-", note or "-")
    done = sum(d.became is not None for d in decisions)
    return f"{table}\n{converter}: {done} of {len(decisions)} Linear layers converted"


def explain(model: nn.Module, converter: str = "fuse", verbose: bool = True) -> Explanation:
    """What ``converter`` ("fuse", "prune" or "quantize") would do with every Linear of ``model``.

    Nothing is changed (the finder runs on a copy). Returns an :class:`Explanation` whose
    ``str()`` is the table; ``verbose`` also prints it.
    """
    if converter not in _LONE:
        raise ValueError(f"converter must be 'fuse', 'prune' or 'quantize', got {converter!r}")
    decisions: list[Decision] = []
    build = _BUILDS[converter]
    rewrite(model, lambda name, linear, act: _WouldBe(build), lone_linear=_LONE[converter], decisions=decisions)
    result = Explanation(converter, decisions)
    if verbose:
        print(result)
    return result


class _WouldBe(nn.Identity):
    """Stands for the module a converter would build: explain builds nothing real."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind


def _kind(module: nn.Module) -> str:
    return getattr(module, "kind", None) or type(module).__name__


def report(decisions: list[Decision], converter: str, verbose: bool) -> None:
    """Log (and with ``verbose`` print) the converters' table."""
    if not (verbose or log.isEnabledFor(logging.INFO)):
        return
    text = format_decisions(decisions, converter)
    log.info("%s", text)
    if verbose:
        print(text)


__all__ = ["Explanation", "explain", "format_decisions"]

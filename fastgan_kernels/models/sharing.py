"""Parameter sharing: tie the weights of layers of equal shape.

A generator with repeated hidden widths, e.g. ``hidden=(256, 256, 256)``, has several
256x256 layers; tying them (one ``nn.Parameter`` used by all) cuts the parameter count
and the optimiser state. The tie is by object identity, which is what autograd and the
optimisers need:

* every use of the shared weight adds its contribution into the *one* ``.grad`` (autograd
  accumulates into a leaf), so the gradient is the sum over the tied layers;
* ``model.parameters()`` yields the shared Parameter once, so an optimiser (and DDP's
  reducer) sees it once: one Adam state, one update per step, not one per layer.

``state_dict`` still lists each layer's key (pointing at the same tensor), so checkpoints
load into an untied model too; rebuild a tied model by calling :func:`tie_equal_shapes`
again before ``load_state_dict`` (the training code does, from its config).

Works on any module with a 2-D ``weight`` Parameter and ``in_features``/``out_features``:
``nn.Linear``, ``FusedLinear``, and ``BlockSparseLinear`` in masked mode (call it before
``fuse``/``prune`` or after: both keep Parameters shared).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

from torch import nn


@dataclasses.dataclass
class SharingReport:
    """Which layers were tied and how many parameters that saved."""

    groups: list[list[str]]  # each group: the owner first, then the layers tied to it
    params_before: int
    params_after: int

    @property
    def saved(self) -> int:
        return self.params_before - self.params_after

    def to_dict(self) -> dict:
        return {"groups": self.groups, "params_before": self.params_before, "params_after": self.params_after,
                "saved": self.saved}

    def __str__(self) -> str:
        tied = "; ".join(" = ".join(g) for g in self.groups) or "nothing to tie"
        pct = 100.0 * self.saved / self.params_before if self.params_before else 0.0
        return (f"tied: {tied}\nparameters {self.params_before:,} -> {self.params_after:,} "
                f"(saved {self.saved:,}, {pct:.1f}%)")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of distinct parameter elements (a tied Parameter counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _tieable(model: nn.Module, names: Optional[Iterable[str]]) -> list[tuple[str, nn.Module]]:
    wanted = None if names is None else set(names)
    layers = []
    for name, m in model.named_modules():
        weight = getattr(m, "weight", None)
        if not (isinstance(weight, nn.Parameter) and weight.dim() == 2 and hasattr(m, "in_features")):
            continue
        if wanted is None or name in wanted:
            layers.append((name, m))
    if wanted is not None:
        missing = wanted - {n for n, _ in layers}
        if missing:
            raise ValueError(f"tie_equal_shapes: no layer with a 2-D weight named {sorted(missing)}")
    return layers


def tie_equal_shapes(model: nn.Module, tie_bias: bool = False, names: Optional[Iterable[str]] = None) -> SharingReport:
    """Tie the weights (and with ``tie_bias`` the biases) of layers of equal shape, in place.

    Layers are grouped by ``(out_features, in_features)``; in each group of two or more, every
    layer takes the first one's Parameter. ``names`` restricts tying to those modules.
    Returns a :class:`SharingReport` with the groups and the parameter count before and after.
    """
    before = count_parameters(model)
    groups: dict[tuple[int, int], list[tuple[str, nn.Module]]] = {}
    for name, m in _tieable(model, names):
        groups.setdefault(tuple(m.weight.shape), []).append((name, m))
    tied = []
    for members in groups.values():
        if len(members) < 2:
            continue
        (_, owner), rest = members[0], members[1:]
        for _, m in rest:
            m.weight = owner.weight
            if tie_bias and owner.bias is not None and m.bias is not None:
                m.bias = owner.bias
        tied.append([n for n, _ in members])
    return SharingReport(tied, before, count_parameters(model))


def shared_groups(model: nn.Module) -> list[list[str]]:
    """Names of the parameters that are one tensor (groups of two or more), for checks and reports."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]

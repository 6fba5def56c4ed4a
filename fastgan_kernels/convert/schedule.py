"""Gradual block pruning during fine-tuning (Zhu & Gupta, 2017, "To prune, or not to prune").

The sparsity rises from ``initial`` to ``final`` over ``[begin_step, end_step]`` as

    s_t = final + (initial - final) * (1 - (t - begin_step) / (end_step - begin_step)) ** 3

fast at first, while the network has redundancy to give, then slower. :class:`GradualPruner`
applies it to every masked-mode BlockSparseLinear of a model: call ``pruner.step()`` once per
optimiser step from any training loop.
"""
from __future__ import annotations

import dataclasses

from torch import nn

from ..nn.block_sparse_linear import BlockSparseLinear, check_sparsity
from .prune import apply_sparsity


@dataclasses.dataclass(frozen=True)
class CubicSparsitySchedule:
    final: float
    begin_step: int = 0
    end_step: int = 1000
    initial: float = 0.0
    frequency: int = 1

    def __post_init__(self):
        check_sparsity(self.final)
        check_sparsity(self.initial)
        if self.end_step <= self.begin_step:
            raise ValueError(f"end_step must be > begin_step, got {self.begin_step}..{self.end_step}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")

    def sparsity_at(self, step: int) -> float:
        if step <= self.begin_step:
            return self.initial
        if step >= self.end_step:
            return self.final
        # Masks change every `frequency` steps: hold the value from the last update step.
        step = self.begin_step + (step - self.begin_step) // self.frequency * self.frequency
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final + (self.initial - self.final) * (1.0 - progress) ** 3


class GradualPruner:
    """Raises the block sparsity of a model's masked BlockSparseLinear layers along a schedule.

    Frozen layers (weight with ``requires_grad=False``, e.g. the generator layers a transfer run
    keeps) are left dense: a layer that is not trained cannot recover from losing blocks, and
    pruning the first layer of a generator at 90% cuts most hidden units off the latent, which
    collapses its samples onto one mode (measured on the digits transfer recipe: 1 class of 2).
    ``frozen`` lists the layers so left out.
    """

    def __init__(self, model: nn.Module, schedule: CubicSparsitySchedule, scope: str = "layer"):
        masked = {name: m for name, m in model.named_modules()
                  if isinstance(m, BlockSparseLinear) and m.mode == "masked"}
        self.layers = {name: m for name, m in masked.items() if m.weight.requires_grad}
        self.frozen = [name for name in masked if name not in self.layers]
        if not self.layers:
            raise ValueError("model has no trainable BlockSparseLinear layers in masked mode; use prune(model, ..., "
                             "mode='masked') first" + (f" (frozen, left dense: {self.frozen})" if self.frozen else ""))
        self.schedule, self.scope = schedule, scope
        self.step_count = 0
        self.current = None

    def step(self) -> float:
        """Advance one step; re-mask when the scheduled sparsity changed. Returns the sparsity."""
        target = self.schedule.sparsity_at(self.step_count)
        self.step_count += 1
        if target != self.current:
            apply_sparsity(self.layers, target, self.scope)
            self.current = target
        return target

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "current": self.current}

    def load_state_dict(self, state: dict) -> None:
        self.step_count, self.current = state["step_count"], state["current"]

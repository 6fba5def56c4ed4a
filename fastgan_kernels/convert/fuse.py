"""``fuse(model)``: Linear + activation pairs become FusedLinear."""
from __future__ import annotations

from torch import nn

from ..nn.fused_linear import FusedLinear
from ._rewrite import Act, rewrite
from .explain import report


def fuse(model: nn.Module, backend: str = "auto", inplace: bool = False, verbose: bool = False) -> nn.Module:
    """Replace every ``nn.Linear`` followed by an activation (LeakyReLU, ReLU, Tanh, Sigmoid, ...) with a
    :class:`FusedLinear`; an eval-mode ``BatchNorm1d`` between them is folded into the Linear first, and a
    Dropout between them stays after the fused layer (see ``convert/_rewrite.py``).

    Pairs are found inside ``nn.Sequential`` (``inplace=True`` activations included) and,
    through ``torch.fx``, in modules whose forward calls e.g. ``F.leaky_relu(self.fc(x), 0.2)``,
    ``torch.tanh(self.fc(x))`` or ``self.fc(x).tanh()`` (such a module comes back as a
    ``torch.fx.GraphModule``). Parameters are shared with the Linear they replace and keep
    their ``state_dict`` keys; outputs and gradients match the original model.

    Args:
        backend: the backend the new modules use ("auto" by default).
        inplace: modify ``model`` itself instead of a deep copy.
        verbose: print the table of what became of every Linear (:func:`fastgan_kernels.explain`'s);
            it is always logged at INFO on the ``fastgan_kernels.convert`` logger.
    """

    def make(name: str, linear: nn.Linear, act: Act) -> nn.Module:
        return FusedLinear.from_linear(linear, act.name, act.negative_slope, backend)

    decisions: list = []
    fused = rewrite(model, make, inplace=inplace, decisions=decisions)
    report(decisions, "fuse", verbose)
    return fused

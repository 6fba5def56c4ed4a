"""What the converters recognise after a Linear: activations (modules, functions, methods), Dropout.

The one table of activations: every form a model may write an activation in (``nn.LeakyReLU(0.2)``,
``F.leaky_relu(h, 0.2)``, ``torch.tanh(h)``, ``h.sigmoid()``, ``F.relu(h, inplace=True)``,
``h.relu_()``, ...) maps onto a name of :mod:`fastgan_kernels.activations` here and nowhere else.
GELU, SiLU and ELU are mapped only when the installed activations module has them (the kernels
learn them in one change; the converters follow without another).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..activations import Activation


@dataclasses.dataclass(frozen=True)
class Act:
    """An activation found after a Linear: its name in fastgan_kernels.activations and its float parameter
    (LeakyReLU's slope; ELU's alpha travels in the same parameter)."""

    name: str
    negative_slope: float = 0.2

    def __str__(self) -> str:
        return f"{self.name}({self.negative_slope:g})" if self.name in ("leaky_relu", "elu") else self.name


IDENTITY = Act("identity")


def _known(name: str) -> bool:
    return hasattr(Activation, name.upper())


# name -> (module classes, functions, tensor methods); functions/methods take the input first and
# may take `inplace` (positionally or by keyword). Parameterised ones (leaky_relu, elu, gelu) below.
_SIMPLE = {
    "relu": ((nn.ReLU,), (F.relu, F.relu_, torch.relu, torch.relu_), ("relu", "relu_")),
    "tanh": ((nn.Tanh,), (torch.tanh, F.tanh, torch.tanh_), ("tanh", "tanh_")),
    "sigmoid": ((nn.Sigmoid,), (torch.sigmoid, F.sigmoid, torch.sigmoid_), ("sigmoid", "sigmoid_")),
    "silu": ((nn.SiLU,), (F.silu,), ()),
}
_LEAKY_FUNCTIONS = (F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu, torch._C._nn.leaky_relu_)
_ELU_FUNCTIONS = (F.elu, F.elu_)
_GELU_FUNCTIONS = (F.gelu, torch._C._nn.gelu)

_MODULES = {cls: name for name, (classes, _, _) in _SIMPLE.items() if _known(name) for cls in classes}
_FUNCTIONS = {fn: name for name, (_, fns, _) in _SIMPLE.items() if _known(name) for fn in fns}
_METHODS = {m: name for name, (_, _, methods) in _SIMPLE.items() if _known(name) for m in methods}

# act(c * z) == c * act(z) for every c >= 0: such an activation commutes with Dropout's scaling mask.
POSITIVELY_HOMOGENEOUS = ("identity", "relu", "leaky_relu")


def _gelu(approximate) -> Optional[Act]:
    name = {"none": "gelu", "tanh": "gelu_tanh"}.get(approximate)
    return Act(name) if name and _known(name) else None


def activation_of_module(module: nn.Module) -> Optional[Act]:
    """The activation an ``nn`` module applies, or None."""
    if isinstance(module, nn.LeakyReLU):
        return Act("leaky_relu", float(module.negative_slope))
    if isinstance(module, nn.ELU):
        return Act("elu", float(module.alpha)) if _known("elu") else None
    if isinstance(module, nn.GELU):
        return _gelu(module.approximate)
    name = _MODULES.get(type(module))
    return Act(name) if name else None


def _arg(node: fx.Node, index: int, keyword: str, default):
    return node.args[index] if len(node.args) > index else node.kwargs.get(keyword, default)


def _only_inplace_extra(node: fx.Node, first_extra: int) -> bool:
    """Whether the call passes nothing beyond its recognised arguments but ``inplace``."""
    extra_args = node.args[first_extra:]
    return len(extra_args) <= 1 and set(node.kwargs) <= {"inplace"}


def activation_of_node(node: fx.Node, source: fx.Node, modules: dict[str, nn.Module]) -> Optional[Act]:
    """The activation ``node`` applies to ``source``, or None."""
    if not node.args or node.args[0] is not source:
        return None
    if node.op == "call_module":
        return activation_of_module(modules[node.target])
    if node.op == "call_method":
        name = _METHODS.get(node.target)
        return Act(name) if name and len(node.args) == 1 and not node.kwargs else None
    if node.op != "call_function":
        return None
    if node.target in _LEAKY_FUNCTIONS:
        slope = _arg(node, 1, "negative_slope", 0.01)
        return Act("leaky_relu", float(slope)) if isinstance(slope, (int, float)) and slope >= 0 else None
    if node.target in _ELU_FUNCTIONS:
        alpha = _arg(node, 1, "alpha", 1.0)
        return Act("elu", float(alpha)) if _known("elu") and isinstance(alpha, (int, float)) else None
    if node.target in _GELU_FUNCTIONS:
        return _gelu(_arg(node, 1, "approximate", "none")) if len(node.args) <= 2 and set(node.kwargs) <= {
            "approximate"} else None
    name = _FUNCTIONS.get(node.target)
    return Act(name) if name and _only_inplace_extra(node, 1) else None


def describe_node(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """A short name for what a graph node does (for "followed by ..." reasons)."""
    if node.op == "call_module":
        return type(modules.get(node.target)).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}()"
    return "the output" if node.op == "output" else node.op


# --- Dropout -----------------------------------------------------------------------------------------------------
_DROPOUT_MODULES = (nn.Dropout, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Dropout1d)


def dropout_of_module(module: nn.Module) -> Optional[nn.Module]:
    return module if isinstance(module, _DROPOUT_MODULES) else None


def is_dropout_node(node: fx.Node, source: fx.Node, modules: dict[str, nn.Module]) -> Optional[bool]:
    """For a Dropout applied to ``source``: whether it is active (training); None when not a Dropout.

    ``F.dropout(h, p, training=self.training)`` traces with the flag as a constant."""
    if not node.args or node.args[0] is not source:
        return None
    if node.op == "call_module" and isinstance(modules.get(node.target), _DROPOUT_MODULES):
        return modules[node.target].training
    if node.op == "call_function" and node.target is F.dropout:
        training = _arg(node, 2, "training", True)
        return bool(training) if isinstance(training, bool) else None
    return None


def dropout_commutes(module_or_active, act: Act) -> bool:
    """Whether a Dropout may move after the fused activation: always in eval (identity); in training
    only a plain ``nn.Dropout`` (a non-negative scaling mask) before a positively homogeneous act."""
    if isinstance(module_or_active, nn.Module):
        if not module_or_active.training:
            return True
        plain = type(module_or_active) is nn.Dropout
    else:
        if not module_or_active:
            return True
        plain = True
    if act.name == "leaky_relu" and act.negative_slope < 0:
        return False
    return plain and act.name in POSITIVELY_HOMOGENEOUS


__all__ = ["Act", "IDENTITY", "POSITIVELY_HOMOGENEOUS", "activation_of_module", "activation_of_node",
           "describe_node", "dropout_of_module", "is_dropout_node", "dropout_commutes"]

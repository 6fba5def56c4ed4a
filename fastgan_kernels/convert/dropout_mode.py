"""Keep ``F.dropout(h, p, self.training)`` following ``train()`` / ``eval()`` after a converter traced it.

torch.fx evaluates ``self.training`` while tracing, so the traced graph holds ``training=True`` or
``False`` as a constant: a model converted in eval mode would never drop again after ``train()``
(and one converted in training would keep dropping in eval). :func:`bind` finds the ``F.dropout``
calls whose flag comes from the module's mode, by tracing once more in the other mode and comparing
the flags call by call, and turns each into an ``nn.Dropout`` submodule, which follows the
converted module's mode like any child. A flag that does not change with the mode (a constant
``training=True``, Monte-Carlo dropout) stays as written.
"""
from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import fx, nn


def _dropout_calls(graph: fx.Graph) -> list[fx.Node]:
    return [n for n in graph.nodes if n.op == "call_function" and n.target is F.dropout]


def _arg(node: fx.Node, index: int, name: str, default):
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _mode_dependent(module: nn.Module, graph: fx.Graph, trace: Callable[[nn.Module], fx.Graph]) -> list[fx.Node]:
    calls = _dropout_calls(graph)
    if not calls:
        return []
    modes = {m: m.training for m in module.modules()}  # submodules may differ (a frozen BatchNorm in eval)
    try:
        module.train(not module.training)
        other = _dropout_calls(trace(module))
    except Exception:  # the other mode does not trace: leave the calls as they are
        return []
    finally:
        for m, training in modes.items():
            m.training = training
    if len(other) != len(calls):  # the mode changes the graph's structure: no call-by-call match
        return []
    return [a for a, b in zip(calls, other)
            if isinstance(_arg(a, 2, "training", True), bool) and _arg(a, 2, "training", True) != _arg(b, 2, "training", True)]


def bind(module: nn.Module, graph: fx.Graph, trace: Callable[[nn.Module], fx.Graph]) -> dict[str, nn.Dropout]:
    """Rewrite ``graph``'s mode-dependent ``F.dropout`` calls into ``call_module`` nodes; returns the
    new ``nn.Dropout`` modules by name, to be registered on the module the graph will run on."""
    new = {}
    for node in _mode_dependent(module, graph, trace):
        p, inplace = _arg(node, 1, "p", 0.5), _arg(node, 3, "inplace", False)
        if not isinstance(p, (int, float)) or not isinstance(inplace, bool):
            continue  # a computed rate: not expressible as a module
        name = f"functional_dropout_{len(new)}"
        while hasattr(module, name):
            name += "_"
        dropout = nn.Dropout(float(p), inplace=inplace)
        dropout.train(module.training)
        new[name] = dropout
        with graph.inserting_before(node):
            call = graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    return new

"""Finding ``Linear`` -> activation pairs in a model and replacing them, for every converter.

``fuse``, ``prune`` and ``quantize`` differ only in the module they build for a pair;
this module finds the pairs:

* in every ``nn.Sequential``: a ``Linear`` directly followed by an activation module
  (``inplace=True`` included); the Linear's slot gets the new module and the
  activation's slot an ``nn.Identity``, so indices and ``state_dict`` keys stay;
* elsewhere, through ``torch.fx``: the module that owns a remaining Linear is traced,
  and a Linear whose only user is an activation (a module, ``F.leaky_relu(h, 0.2)``,
  ``torch.tanh(h)``, ``h.tanh()``, ...) is replaced in place. The traced module comes
  back as a ``torch.fx.GraphModule`` that keeps the submodule names, hence the keys.
  A module that FX cannot trace (data-dependent control flow) is left as it is, with a
  warning naming it.
"""
from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import fx, nn


@dataclasses.dataclass(frozen=True)
class Act:
    """An activation found after a Linear: its name in fastgan_kernels.activations and its slope."""

    name: str
    negative_slope: float = 0.2


IDENTITY = Act("identity")

# A factory builds the replacement of one Linear (+ activation); returning None keeps it.
Factory = Callable[[str, nn.Linear, Act], Optional[nn.Module]]

_MODULE_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_FUNCTION_ACTS = {
    F.relu: "relu", torch.relu: "relu", torch.relu_: "relu", F.relu_: "relu",
    torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
}
_METHOD_ACTS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh",
                "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
_LEAKY_FUNCTIONS = (F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu, torch._C._nn.leaky_relu_)


def activation_of_module(module: nn.Module) -> Optional[Act]:
    if isinstance(module, nn.LeakyReLU):
        return Act("leaky_relu", float(module.negative_slope))
    for cls, name in _MODULE_ACTS.items():
        if isinstance(module, cls):
            return Act(name)
    return None


def _activation_of_node(node: fx.Node, source: fx.Node, modules: dict[str, nn.Module]) -> Optional[Act]:
    """The activation ``node`` applies to ``source``, or None."""
    if not node.args or node.args[0] is not source:
        return None
    if node.op == "call_module":
        return activation_of_module(modules[node.target])
    if node.op == "call_method":
        name = _METHOD_ACTS.get(node.target)
        return Act(name) if name and len(node.args) == 1 and not node.kwargs else None
    if node.op == "call_function":
        if node.target in _LEAKY_FUNCTIONS:
            slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
            return Act("leaky_relu", float(slope)) if isinstance(slope, (int, float)) else None
        name = _FUNCTION_ACTS.get(node.target)
        return Act(name) if name and len(node.args) == 1 else None
    return None


def _rewrite_sequentials(model: nn.Module, make: Factory, lone: bool, done: set) -> None:
    for seq_name, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules.keys())
        i = 0
        while i < len(keys):
            child = seq._modules[keys[i]]
            if type(child) is nn.Linear:
                name = f"{seq_name}.{keys[i]}" if seq_name else keys[i]
                act = activation_of_module(seq._modules[keys[i + 1]]) if i + 1 < len(keys) else None
                if act is not None or lone:
                    new = make(name, child, act or IDENTITY)
                    done.add(id(child))  # decided: converted, or declined by the factory
                    if new is not None:
                        seq._modules[keys[i]] = new
                        if act is not None:
                            seq._modules[keys[i + 1]] = nn.Identity()
                            i += 1
            i += 1


class _Tracer(fx.Tracer):
    """Treats modules the converters built (and any non-torch.nn module) with no Linear inside as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m).__module__.startswith("fastgan_kernels."):
            return True
        return super().is_leaf_module(m, qualname)


def _rewrite_traced(module: nn.Module, make: Factory, lone: bool, done: set, label: str) -> Optional[nn.Module]:
    """Trace ``module`` and replace its Linear (+ activation) nodes; None when nothing changed."""
    try:
        graph = _Tracer().trace(module)
    except Exception as exc:  # data-dependent control flow, unsupported ops, ...
        warnings.warn(f"fastgan_kernels: could not trace {label} with torch.fx ({type(exc).__name__}: {exc}); "
                      f"its Linear layers outside nn.Sequential are left unconverted")
        return None
    modules = dict(module.named_modules())
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_module" or type(modules.get(node.target)) is not nn.Linear:
            continue
        linear = modules[node.target]
        if id(linear) in done:
            continue
        users = list(node.users)
        act_node = users[0] if len(users) == 1 else None
        act = _activation_of_node(act_node, node, modules) if act_node is not None else None
        if act is None and not lone:
            continue
        new = make(f"{label}.{node.target}" if label else node.target, linear, act or IDENTITY)
        done.add(id(linear))
        if new is None:
            continue
        parent_name, _, attr = node.target.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new)
        modules[node.target] = new
        changed = True
        if act is not None:
            act_node.replace_all_uses_with(node)
            graph.erase_node(act_node)
    if not changed:
        return None
    graph.lint()
    return _graph_module_like(module, graph)


def _graph_module_like(module: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A GraphModule with ``module``'s children, parameters and buffers, in ``module``'s order.

    GraphModule alone keeps only what the graph touches, in the order it touches it;
    the converters promise the same state_dict keys (in the same order) as the original.
    """
    gm = fx.GraphModule(module, graph, class_name=type(module).__name__)
    for table in ("_parameters", "_buffers", "_modules"):
        original, traced = getattr(module, table), getattr(gm, table)
        merged = {name: value for name, value in original.items()}
        merged.update({name: value for name, value in traced.items() if name not in merged})
        traced.clear()
        traced.update(merged)
    gm.train(module.training)
    return gm


def _tracing_owner(model: nn.Module, name: str) -> Optional[str]:
    """The nearest ancestor of module ``name`` that is not an nn.Sequential (None: all are)."""
    owner = name.rpartition(".")[0]
    while isinstance(model.get_submodule(owner) if owner else model, nn.Sequential):
        if not owner:
            return None
        owner = owner.rpartition(".")[0]
    return owner


def rewrite(model: nn.Module, make: Factory, *, lone_linear: bool = False, inplace: bool = False) -> nn.Module:
    """Replace every ``Linear`` (+ following activation) of ``model`` with ``make(name, linear, act)``.

    ``lone_linear`` also converts Linears not followed by an activation (``act`` is identity).
    Returns the converted model (a copy unless ``inplace``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    if type(model) is nn.Linear:  # a bare Linear: nothing can follow it
        return (lone_linear and make("", model, IDENTITY)) or model
    done: set[int] = set()
    _rewrite_sequentials(model, make, lone_linear, done)
    # Owners of the Linears the Sequential pass did not convert, deepest first. A Linear that
    # ends a Sequential may still be followed by an activation in the forward of the nearest
    # module above that is not a Sequential: that module is the one to trace.
    owners = sorted({_tracing_owner(model, name) for name, m in model.named_modules()
                     if type(m) is nn.Linear and id(m) not in done} - {None},
                    key=lambda n: -n.count(".") - bool(n))
    for owner in owners:
        module = model.get_submodule(owner) if owner else model
        traced = _rewrite_traced(module, make, lone_linear, done, owner)
        if traced is None:
            continue
        if not owner:
            return traced
        parent, _, attr = owner.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, traced)
    return model


__all__ = ["Act", "IDENTITY", "Factory", "activation_of_module", "rewrite"]

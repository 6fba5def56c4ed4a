"""Finding the chain of linear layers in a model (what :func:`compile_generator` compiles).

The model is traced with ``torch.fx`` (``nn.Sequential`` is walked through; the project's layer
modules and torch's activations are leaves) and its graph must read as

    input -> layer [-> activation] -> layer [-> activation] -> ... [-> view / reshape / Unflatten] -> output

where a layer is ``nn.Linear``, ``FusedLinear``, ``Int8Linear`` or ``BlockSparseLinear``, an
activation is a module, function or method the converters recognise (convert/_rewrite.py), and
``nn.Identity`` / ``nn.Dropout`` (inference: identity) may appear anywhere. Shape arithmetic for the
trailing reshape (``z.shape[0]``, ``z.size(0)``) is allowed. Anything else that touches the
activations is reported by name.
"""
from __future__ import annotations

import dataclasses
import operator
from typing import Optional

import torch
from torch import fx, nn

from ..convert._rewrite import _Tracer
from ..convert.recognize import Act
from ..convert.recognize import activation_of_node as _activation_of_node
from ..nn import BlockSparseLinear, FusedLinear, Int8Linear

LAYER_TYPES = (nn.Linear, FusedLinear, Int8Linear, BlockSparseLinear)
_PASS_THROUGH = (nn.Identity, nn.Dropout)
_RESHAPES = ("view", "reshape")


class NotAChainError(ValueError):
    """The model is not a chain of linear layers; the message names the module that breaks it."""


@dataclasses.dataclass
class ChainLayer:
    name: str                   # qualified module name in the traced model
    module: nn.Module
    act: Optional[Act] = None   # an activation module / function after the layer


@dataclasses.dataclass
class Chain:
    layers: list[ChainLayer]
    tail: Optional[tuple[int, ...]] = None  # per-sample output shape of a trailing reshape


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"module `{node.target}` ({type(modules[node.target]).__name__})"
    target = getattr(node.target, "__name__", node.target)
    return f"`{target}` ({node.op} {node.name})"


def _uses(node: fx.Node, value: fx.Node) -> bool:
    return value in node.all_input_nodes


def _tail_shape(node: fx.Node, modules: dict[str, nn.Module]) -> Optional[tuple[int, ...]]:
    """The per-sample shape of a trailing reshape node, or None if it is not one."""
    if node.op == "call_module" and isinstance(modules[node.target], nn.Unflatten):
        m = modules[node.target]
        return tuple(int(s) for s in m.unflattened_size) if m.dim in (1, -1) else None
    if node.op == "call_method" and node.target in _RESHAPES:
        dims = node.args[1:]
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        rest = dims[1:]
        if len(dims) >= 2 and all(isinstance(d, int) and d > 0 for d in rest):
            return tuple(rest)
    return None


def find_chain(model: nn.Module) -> Chain:
    """The chain of ``model`` (see the module docstring), or a NotAChainError naming what breaks it."""
    who = type(model).__name__
    if isinstance(model, LAYER_TYPES):
        model = nn.Sequential(model)
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - tracing fails in many ways; say which model
        raise NotAChainError(f"compile_generator: cannot trace {who} with torch.fx ({exc}); "
                             f"pass the nn.Sequential of its layers instead") from exc
    modules = dict(model.named_modules())
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise NotAChainError(f"compile_generator: {who}.forward takes {len(placeholders)} inputs; a chain takes one "
                             f"(a conditional generator needs net_input() and net, see compile_generator)")
    cur, layers, tail = placeholders[0], [], None
    for node in graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            if node.args[0] is not cur:
                raise NotAChainError(f"compile_generator: {who} does not return the chain's output")
            break
        if not _uses(node, cur):
            continue  # shape arithmetic for the reshape (z.shape[0], z.size(0)), constants
        if tail is not None:
            raise NotAChainError(f"compile_generator: {_describe(node, modules)} follows the trailing reshape; "
                                 f"only the reshape may end the chain")
        if node.op == "call_method" and node.target in ("size", "dim") or \
                node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
            continue  # reads the shape only
        if node.op == "call_function" and node.target is operator.getitem:
            continue
        if node.args and node.args[0] is not cur:
            raise NotAChainError(f"compile_generator: {_describe(node, modules)} combines the activations with "
                                 f"something else; not a chain of linear layers")
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, LAYER_TYPES):
            layers.append(ChainLayer(str(node.target), module))
            cur = node
        elif isinstance(module, _PASS_THROUGH):
            cur = node
        elif (act := _activation_of_node(node, cur, modules)) is not None:
            if not layers or layers[-1].act is not None:
                raise NotAChainError(f"compile_generator: activation {_describe(node, modules)} does not directly "
                                     f"follow a linear layer")
            layers[-1].act = act
            cur = node
        elif (shape := _tail_shape(node, modules)) is not None:
            tail, cur = shape, node
        else:
            raise NotAChainError(f"compile_generator: {_describe(node, modules)} breaks the chain of linear layers "
                                 f"(supported: {', '.join(t.__name__ for t in LAYER_TYPES)}, activations, "
                                 f"a trailing view/reshape)")
    if not layers:
        raise NotAChainError(f"compile_generator: {who} has no linear layer")
    return Chain(layers, tail)


def is_conditional(model: nn.Module) -> bool:
    """A conditional generator: ``net_input(z, labels)`` builds the chain's input for ``net``."""
    return callable(getattr(model, "net_input", None)) and isinstance(getattr(model, "net", None), nn.Module)


def conditional_tail(model: nn.Module, width: int) -> Optional[tuple[int, ...]]:
    """The per-sample output shape of a conditional generator, from one probe call (2 samples)."""
    if not hasattr(model, "latent_dim"):
        return None
    with torch.no_grad():
        device = next(model.parameters()).device
        z = torch.zeros(2, model.latent_dim, device=device)
        out = model(z, torch.zeros(2, dtype=torch.long, device=device))
    shape = tuple(out.shape[1:])
    return shape if len(shape) > 1 and int(torch.tensor(shape).prod()) == width else None

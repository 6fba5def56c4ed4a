"""Finding ``Linear`` -> [BatchNorm1d] -> [Dropout] -> activation chains and replacing them, for every converter.

``fuse``, ``prune`` and ``quantize`` differ only in the module they build for a Linear (+ its
activation); this module finds the chains and records what it decided for every Linear (which
:func:`fastgan_kernels.explain` prints):

* in every ``nn.Sequential``: a ``Linear``, then optionally a ``BatchNorm1d``, then any Dropouts,
  then an activation module (``inplace=True`` included). The Linear's slot gets the new module,
  a folded BatchNorm's slot a :class:`~.fold.FoldedBatchNorm` and the activation's slot an
  ``nn.Identity``, so indices and the other ``state_dict`` keys stay;
* elsewhere, through ``torch.fx``: the module that owns a remaining Linear is traced and the
  same chain is looked for in its graph (activations as modules, functions or methods, see
  :mod:`.recognize`); the traced module comes back as a ``torch.fx.GraphModule`` that keeps the
  submodule names, hence the keys. A module FX cannot trace (data-dependent control flow) is
  left as it is, with a warning naming it.

A BatchNorm1d in eval mode (running statistics) is folded into the Linear (:mod:`.fold`) and the
factory receives the folded Linear; in training mode it stays, with the Linear before it. A
Dropout between the Linear and its activation stays where it is, after the fused layer: in eval
it is the identity; in training it commutes with a positively homogeneous activation (ReLU,
LeakyReLU with slope >= 0), so the same seed gives the same mask and the same output.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import warnings
from typing import Callable, Optional

from torch import fx, nn

from .. import activations
from ..ops._validate import FLOAT_DTYPES
from . import dropout_mode, fold
from .recognize import (IDENTITY, Act, activation_of_module, activation_of_node, describe_node, dropout_commutes,
                        dropout_of_module, is_dropout_node)

# A factory builds the replacement of one Linear (+ activation); returning None keeps it.
Factory = Callable[[str, nn.Linear, Act], Optional[nn.Module]]


@dataclasses.dataclass
class Decision:
    """What the finder did with one Linear."""

    name: str
    shape: tuple[int, int]  # (out_features, in_features)
    dtype: str
    became: Optional[nn.Module] = None  # the replacement, None when left alone
    act: Optional[Act] = None  # the activation fused into it
    folded: str = ""  # the BatchNorm1d folded into it (its name and eps)
    dropout: str = ""  # Dropouts the fused activation moved before
    reason: str = ""  # why it was left alone, or why its activation was not fused


@dataclasses.dataclass
class _Chain:
    """A Linear and what follows it: the BatchNorm to fold, Dropouts to step over, the activation."""

    bn: Optional[nn.Module] = None
    bn_name: str = ""
    foldable: bool = False
    dropouts: list = dataclasses.field(default_factory=list)  # names
    act: Optional[Act] = None
    reason: str = ""


class _Finder:
    def __init__(self, model: nn.Module, make: Factory, lone: bool):
        self.make, self.lone = make, lone
        self.decisions: dict[int, Decision] = {}  # id(linear) -> decision taken
        self.pending: dict[int, str] = {}  # id(linear) -> why not yet converted
        weight_users = collections.defaultdict(list)
        for name, m in model.named_modules():
            if isinstance(getattr(m, "weight", None), nn.Parameter):
                weight_users[id(m.weight)].append(name)
        self.sharing = {wid: names for wid, names in weight_users.items() if len(names) > 1}

    def done(self, linear: nn.Linear) -> bool:
        return id(linear) in self.decisions

    def shared_with(self, name: str, linear: nn.Linear) -> list[str]:
        return [n for n in self.sharing.get(id(linear.weight), []) if n != name]

    def refine(self, name: str, linear: nn.Linear, chain: _Chain) -> _Chain:
        """The checks every chain goes through, whatever found it."""
        if chain.bn is not None:
            why = fold.why_not_foldable(chain.bn, linear)
            if why is None and self.shared_with(name, linear):
                why = f"weight shared with {', '.join(self.shared_with(name, linear))}: folding would untie it"
            if why is not None:  # the BatchNorm stays: nothing after it can be fused
                return _Chain(reason=f"followed by {chain.bn_name or 'BatchNorm1d'}: {why}")
            chain.foldable = True
        if chain.act is not None:
            try:
                activations.check_activation(chain.act.name, chain.act.negative_slope)
            except (ValueError, TypeError) as exc:
                chain.reason, chain.act = f"activation {chain.act} not fusable: {exc}", None
        return chain

    def decide(self, name: str, linear: nn.Linear, chain: _Chain) -> Optional[nn.Module]:
        """Build the replacement (None: leave ``linear``); records the decision."""
        decision = Decision(name, (linear.out_features, linear.in_features), str(linear.weight.dtype).replace(
            "torch.", ""))
        if linear.weight.dtype not in FLOAT_DTYPES:
            decision.reason = f"unsupported dtype {decision.dtype} (the kernels take float32, float16, bfloat16)"
        elif chain.act is None and not chain.foldable and not self.lone:
            self.pending[id(linear)] = chain.reason
            return None
        else:
            source = fold.folded_linear(linear, chain.bn) if chain.foldable else linear
            decision.became = self.make(name, source, chain.act or IDENTITY)
            if decision.became is None:
                decision.reason = "skipped (the converter's skip list)"
            else:
                decision.act, decision.reason = chain.act, chain.reason
                if chain.foldable:
                    decision.folded = f"{chain.bn_name} (eps={chain.bn.eps:g})"
                if chain.act is not None and chain.dropouts:
                    decision.dropout = ", ".join(chain.dropouts)
        self.decisions[id(linear)] = decision
        self.pending.pop(id(linear), None)
        return decision.became

    # --- nn.Sequential ------------------------------------------------------------------------------------------
    def sequentials(self, model: nn.Module) -> None:
        for seq_name, seq in list(model.named_modules()):
            if not isinstance(seq, nn.Sequential):
                continue
            keys = list(seq._modules.keys())
            full = (lambda key: f"{seq_name}.{key}" if seq_name else key)
            i = 0
            while i < len(keys):
                linear = seq._modules[keys[i]]
                if type(linear) is not nn.Linear or self.done(linear):
                    i += 1
                    continue
                chain, j = _Chain(), i + 1
                if j < len(keys) and isinstance(seq._modules[keys[j]], nn.modules.batchnorm._BatchNorm):
                    chain.bn, chain.bn_name, bn_key = seq._modules[keys[j]], full(keys[j]), keys[j]
                    j += 1
                drops = []
                while j < len(keys) and dropout_of_module(seq._modules[keys[j]]) is not None:
                    drops.append(seq._modules[keys[j]])
                    chain.dropouts.append(full(keys[j]))
                    j += 1
                nxt = seq._modules[keys[j]] if j < len(keys) else None
                chain.act = activation_of_module(nxt) if nxt is not None else None
                if chain.act is None:
                    chain.reason = (f"followed by {type(nxt).__name__} ({full(keys[j])}), not an activation"
                                    if nxt is not None else "last in its nn.Sequential; nothing to fuse")
                elif not all(dropout_commutes(d, chain.act) for d in drops):
                    chain.reason = f"Dropout in training before {chain.act}, which does not commute with it"
                    chain.act = None
                name = full(keys[i])
                chain = self.refine(name, linear, chain)
                new = self.decide(name, linear, chain)
                if new is not None:
                    seq._modules[keys[i]] = new
                    if chain.foldable:
                        seq._modules[bn_key] = fold.FoldedBatchNorm(chain.bn, name)
                    if chain.act is not None:
                        seq._modules[keys[j]] = nn.Identity()
                        i = j
                i += 1

    # --- torch.fx -----------------------------------------------------------------------------------------------
    def traced(self, module: nn.Module, label: str) -> Optional[nn.Module]:
        """Trace ``module`` and replace its Linear chains; None when nothing changed."""
        try:
            graph = _Tracer().trace(module)
        except Exception as exc:  # data-dependent control flow, unsupported ops, ...
            warnings.warn(f"fastgan_kernels: could not trace {label or 'the model'} with torch.fx "
                          f"({type(exc).__name__}: {exc}); its Linear layers outside nn.Sequential are left "
                          f"unconverted")
            for m in module.modules():
                if type(m) is nn.Linear and not self.done(m):
                    self.pending[id(m)] = f"{label or 'the model'} could not be traced by torch.fx ({type(exc).__name__})"
            return None
        modules = dict(module.named_modules())
        calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
        changed = False
        for node in list(graph.nodes):
            if node.op != "call_module" or type(modules.get(node.target)) is not nn.Linear:
                continue
            linear = modules[node.target]
            if self.done(linear):
                continue
            name = f"{label}.{node.target}" if label else node.target
            chain, bn_node, act_node = self._graph_chain(node, modules, calls)
            chain = self.refine(name, linear, chain)
            new = self.decide(name, linear, chain)
            if new is None:
                continue
            _set_submodule(module, node.target, new)
            modules[node.target] = new
            changed = True
            if chain.act is not None:
                act_node.replace_all_uses_with(act_node.args[0])
                graph.erase_node(act_node)
            if chain.foldable:
                bn_node.replace_all_uses_with(node)
                graph.erase_node(bn_node)
                _set_submodule(module, bn_node.target, fold.FoldedBatchNorm(chain.bn, name))
        if not changed:
            return None
        extra = dropout_mode.bind(module, graph, _Tracer().trace)  # F.dropout(h, p, self.training) -> nn.Dropout
        for name, child in extra.items():  # on the original only while the GraphModule copies its children
            module.add_module(name, child)
        try:
            graph.lint()
            return _graph_module_like(module, graph)
        finally:
            for name in extra:
                delattr(module, name)

    @staticmethod
    def _graph_chain(node: fx.Node, modules: dict, calls: collections.Counter):
        """(chain, BatchNorm node, activation node) after a Linear's node."""
        chain, bn_node = _Chain(), None
        if calls[node.target] > 1:
            chain.reason = f"called {calls[node.target]} times in forward: one module cannot fuse a single call"
            return chain, None, None
        cur, active_dropout = node, False
        while True:
            users = list(cur.users)
            if len(users) != 1:
                chain.reason = (f"its output is used {len(users)} times" if users else "its output is unused")
                return dataclasses.replace(chain, bn=None), None, None
            nxt = users[0]
            is_bn = (nxt.op == "call_module" and isinstance(modules.get(nxt.target), nn.modules.batchnorm._BatchNorm)
                     and nxt.args and nxt.args[0] is cur)
            if is_bn and cur is node and calls[nxt.target] == 1:
                bn_node, chain.bn, chain.bn_name = nxt, modules[nxt.target], nxt.target
                cur = nxt
                continue
            active = is_dropout_node(nxt, cur, modules)
            if active is None:
                break
            active_dropout = active_dropout or active
            chain.dropouts.append(nxt.target if nxt.op == "call_module" else "F.dropout")
            cur = nxt
        chain.act = activation_of_node(nxt, cur, modules)
        if chain.act is None:
            chain.reason = f"followed by {describe_node(nxt, modules)}, not an activation"
        elif active_dropout and not dropout_commutes(True, chain.act):
            chain.reason, chain.act = f"Dropout in training before {chain.act}, which does not commute with it", None
        return chain, bn_node, (nxt if chain.act is not None else None)


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent, _, attr = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


class _Tracer(fx.Tracer):
    """Treats modules the converters built (and any non-torch.nn module) with no Linear inside as leaves."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if type(m).__module__.startswith("fastgan_kernels."):
            return True
        return super().is_leaf_module(m, qualname)


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
    """The nearest ancestor of module ``name`` with a forward of its own to trace: not an nn.Sequential
    (the first pass walked those), nn.ModuleList or nn.ModuleDict (no forward). None: there is none."""
    owner = name.rpartition(".")[0]
    while isinstance(model.get_submodule(owner) if owner else model, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        if not owner:
            return None
        owner = owner.rpartition(".")[0]
    return owner


def rewrite(model: nn.Module, make: Factory, *, lone_linear: bool = False, inplace: bool = False,
            decisions: Optional[list] = None) -> nn.Module:
    """Replace every ``Linear`` (+ following activation) of ``model`` with ``make(name, linear, act)``.

    ``lone_linear`` also converts Linears not followed by an activation (``act`` is identity).
    ``decisions``, when given, receives one :class:`Decision` per ``nn.Linear`` of ``model``.
    Returns the converted model (a copy unless ``inplace``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    linears = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    finder = _Finder(model, make, lone_linear)
    if type(model) is nn.Linear:  # a bare Linear: nothing can follow it
        chain = _Chain(reason="a bare Linear: nothing follows it")
        result = finder.decide("", model, chain) or model
    else:
        result = _rewrite_all(model, finder)
    if decisions is not None:
        for name, linear in linears:
            decision = finder.decisions.get(id(linear))
            if decision is None:
                decision = Decision(name, (linear.out_features, linear.in_features),
                                    str(linear.weight.dtype).replace("torch.", ""),
                                    reason=finder.pending.get(id(linear), "not reached by the pattern finder"))
            decisions.append(decision)
    return result


def _rewrite_all(model: nn.Module, finder: _Finder) -> nn.Module:
    finder.sequentials(model)
    # Owners of the Linears the Sequential pass did not convert, deepest first. A Linear that
    # ends a Sequential may still be followed by an activation in the forward of the nearest
    # module above that is not a Sequential: that module is the one to trace.
    owners = sorted({_tracing_owner(model, name) for name, m in model.named_modules()
                     if type(m) is nn.Linear and not finder.done(m)} - {None},
                    key=lambda n: -n.count(".") - bool(n))
    for owner in owners:
        module = model.get_submodule(owner) if owner else model
        traced = finder.traced(module, owner)
        if traced is None:
            continue
        if not owner:
            return traced
        _set_submodule(model, owner, traced)
    return model


__all__ = ["Act", "IDENTITY", "Decision", "Factory", "activation_of_module", "rewrite"]

"""Deployment: a whole generator in one call (:func:`compile_generator`).

``compile_generator(model)`` finds the model's chain of linear layers (discover.py), packs each
layer once in its own format (plan.py) and returns a :class:`CompiledGenerator` whose forward is
one ``fastgan::mlp_chain`` op (ops/mlp_chain.py): on the CPU one C++ call with one parallel
region for every layer (csrc/cpu/mlp_chain.cpp, csrc/cpu/chain/), on a GPU the per-layer ops
replayed from a CUDA graph per batch bucket (cuda_graphs.py).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .discover import NotAChainError, conditional_tail, find_chain, is_conditional
from .module import CompiledGenerator
from .plan import plan_chain

__all__ = ["compile_generator", "CompiledGenerator", "NotAChainError"]


def compile_generator(model: nn.Module, *, dtype: torch.dtype = torch.float32, schedule: str = "auto",
                      cuda_graphs_max_batch: int = 1024) -> CompiledGenerator:
    """Compile ``model``'s chain of linear layers (+ activations, + a trailing reshape) into one op.

    Args:
        model: a plain model (``nn.Linear`` + activations, e.g. ``models.seed_generator()``), or one
            converted by ``fuse`` / ``prune`` (BSR or masked mode) / ``quantize`` (static or dynamic),
            mixed per layer; or a conditional generator with ``net_input(z, labels)`` and ``net``
            (the embedding and concatenation stay in PyTorch, ``net`` becomes the chain).
        dtype: ``torch.bfloat16`` stores the dense (fp32) layers in bf16; other formats keep theirs.
        schedule: CPU work split, "auto" (by batch and weight size), "columns" or "rows".
        cuda_graphs_max_batch: on a GPU, batches up to this size replay a captured CUDA graph.

    Returns a :class:`CompiledGenerator` (eval mode, inference only). Raises NotAChainError (a
    ValueError) naming the module that breaks the chain.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compile_generator: model must be an nn.Module, got {type(model).__name__}")
    front, tail = None, None
    if is_conditional(model):
        chain = find_chain(model.net)
        front = copy.copy(model)
        front._modules = dict(model._modules)
        front._modules["net"] = nn.Identity()
    else:
        chain = find_chain(model)
    plans = plan_chain(chain, dtype)
    if front is not None:
        tail = conditional_tail(model, plans[-1].n)
    else:
        tail = chain.tail
    return CompiledGenerator(plans, tail, front, schedule, cuda_graphs_max_batch)

"""The eager fast path: call a kernel directly when the custom op's machinery has nothing to do.

A ``torch.library`` custom op costs tens of microseconds of Python dispatch per call (autograd
wrapper, redispatch, dynamo guard, aliasing checks). That is noise for a large GEMM and most of
the time of a small one (a GAN generator's layer at batch 64). When no gradient is needed, nothing
traces the call (torch.compile, torch.export), and every tensor is a plain CPU or CUDA tensor
(no FakeTensor, no subclass, no dispatch mode), the op would only forward to the same kernel:
the entry points then call the backend directly. When gradients are needed but nothing traces,
an eager ``torch.autograd.Function`` runs the same forward and backward kernels with the same
formula, skipping the custom op's autograd wrapper. Everything else goes through the custom op.
"""
from __future__ import annotations

from typing import Optional

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)
_peek_functorch = getattr(getattr(torch._C, "_functorch", None), "peek_interpreter_stack", lambda: None)


def route(*tensors: Optional[torch.Tensor]) -> str:
    """How an entry point should run: "direct" (kernel call, nothing needs the op), "autograd"
    (an eager torch.autograd.Function around the same kernels: gradients needed, nothing traces),
    or "op" (the custom op: compile/export tracing, tensor subclasses, dispatch modes)."""
    if torch.compiler.is_compiling():
        return "op"
    if torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack() > 0:
        return "op"
    if _peek_functorch() is not None:  # inside torch.func.grad / vmap / jacrev: wrapped tensors
        return "op"
    needs_grad = False
    grad_mode = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN:
            return "op"
        needs_grad = needs_grad or (grad_mode and t.requires_grad)
    return "autograd" if needs_grad else "direct"


def eligible(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether the kernel can be called directly (see :func:`route`)."""
    return route(*tensors) == "direct"

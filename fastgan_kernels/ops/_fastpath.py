"""The eager fast path: call a kernel directly when the custom op's machinery has nothing to do.

A ``torch.library`` custom op costs tens of microseconds of Python dispatch per call (autograd
wrapper, redispatch, dynamo guard, aliasing checks). That is noise for a large GEMM and most of
the time of a small one (a GAN generator's layer at batch 64). When no gradient is needed, nothing
traces the call (torch.compile, torch.export), and every tensor is a plain CPU or CUDA tensor
(no FakeTensor, no subclass, no dispatch mode), the op would only forward to the same kernel:
the entry points then call the backend directly. Everything else goes through the custom op.
"""
from __future__ import annotations

from typing import Optional

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)


def eligible(*tensors: Optional[torch.Tensor]) -> bool:
    if torch.compiler.is_compiling():
        return False
    if torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack() > 0:
        return False
    needs_grad = torch.is_grad_enabled()
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or (needs_grad and t.requires_grad):
            return False
    return True

"""CompiledGenerator: a generator whose chain of linear layers runs as one op."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ..ops import _fastpath
from ..ops import mlp_chain as op
from . import cuda_graphs
from .plan import FORMAT_NAMES, LayerPlan, describe


class CompiledGenerator(nn.Module):
    """``forward(z[, labels], out=None)``: the front part (conditional generators) in PyTorch, then
    the whole chain in one ``fastgan::mlp_chain`` call, then the trailing reshape (a view).

    Inference only: the module cannot be put in training mode, and inputs that require grad are
    refused. The packed tensors are buffers (``.to()`` moves them; not saved in ``state_dict``:
    compile again from the model's checkpoint).
    """

    def __init__(self, plans: list[LayerPlan], tail: Optional[tuple[int, ...]] = None,
                 front: Optional[nn.Module] = None, schedule: str = "auto", cuda_graphs_max_batch: int = 1024):
        super().__init__()
        if schedule not in op.SCHEDULES:
            raise ValueError(f"schedule must be one of {tuple(op.SCHEDULES)}, got {schedule!r}")
        tensors, self.meta, self.scalars = describe(plans)
        self.layer_formats = tuple(FORMAT_NAMES[p.format] for p in plans)
        self.layer_names = tuple(p.name for p in plans)
        self.weight_bytes = sum(p.weight_bytes() for p in plans)
        self.in_features, self.out_features = plans[0].k, plans[-1].n
        self.tail = tuple(tail) if tail else None
        # A conditional generator's front part: the model with its chain replaced by Identity
        # (a shallow copy sharing the embedding), so net_input() runs as in the original.
        self.front = front
        self.schedule = op.SCHEDULES[schedule]
        self._names = []
        for i, t in enumerate(tensors):
            name = f"chain_{i // op.TENSORS_PER}_{i % op.TENSORS_PER}"
            self.register_buffer(name, t, persistent=False)
            self._names.append(name)
        self._graphs = cuda_graphs.GraphCache(self._run_per_layer, self.in_features, cuda_graphs_max_batch)
        self._refresh()
        super().train(False)

    def _refresh(self) -> None:
        """What the eager CPU fast path of forward() reads: no per-call list building or device lookups."""
        tensors = self._tensors()
        self._packed = (tensors, self.meta, self.scalars, self.schedule)
        self._cpu_kernel = tensors[0].device.type == "cpu" and op._has_cpu_kernel()

    # -- state ---------------------------------------------------------------------------------
    def _tensors(self) -> list[Tensor]:
        return [self._buffers[n] for n in self._names]

    def train(self, mode: bool = True) -> "CompiledGenerator":
        if mode:
            raise RuntimeError("CompiledGenerator is inference only: train the original model and compile it again")
        return super().train(False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._graphs.graphs.clear()  # captured on the old tensors
        self._refresh()
        return self

    # -- forward -------------------------------------------------------------------------------
    def _run_per_layer(self, x: Tensor) -> Tensor:
        return op.per_layer(x, self._tensors(), self.meta, self.scalars)

    def chain(self, x: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """The chain alone on ``x [M, in_features]`` float32 -> ``[M, out_features]`` float32."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"CompiledGenerator: x must be [batch, {self.in_features}], got "
                             f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
        if x.dtype != torch.float32:
            raise TypeError(f"CompiledGenerator: x must be float32, got {x.dtype}")
        if x.requires_grad:
            raise RuntimeError("CompiledGenerator is inference only: x requires grad (use torch.no_grad() "
                               "or detach it)")
        device = self._buffers[self._names[0]].device
        if x.device != device:
            raise ValueError(f"CompiledGenerator: x must be on {device}, got {x.device}")
        if out is not None and (out.dtype != torch.float32 or out.device != x.device or not out.is_contiguous()
                                or out.numel() != x.shape[0] * self.out_features):
            raise ValueError(f"CompiledGenerator: out must be a contiguous float32 tensor of "
                             f"{x.shape[0]} x {self.out_features} elements on {x.device}")
        flat_out = None if out is None else out.view(x.shape[0], self.out_features)
        if x.device.type == "cuda" and not torch.compiler.is_compiling():
            y = self._graphs(x, flat_out)
        else:
            y = op.mlp_chain(x, self._tensors(), self.meta, self.scalars, self.schedule, flat_out)
        return y if out is None else out

    def forward(self, z: Tensor, labels: Optional[Tensor] = None, *, out: Optional[Tensor] = None) -> Tensor:
        # The common serving call (eager, CPU, float32 [M, K], nothing tracing) in as few Python
        # operations as possible: the checks chain() makes, then the kernel itself.
        if (out is None and labels is None and self._cpu_kernel and self.front is None and type(z) is Tensor
                and z.dtype is torch.float32 and z.dim() == 2 and z.shape[1] == self.in_features
                and not z.requires_grad and z.device.type == "cpu" and _fastpath.eligible(z)):
            y = torch.ops.fastgan_ext.mlp_chain.default(z, *self._packed)
            return y if self.tail is None else y.view(y.shape[0], *self.tail)
        if self.training:
            raise RuntimeError("CompiledGenerator is inference only")
        if self.front is not None:
            if labels is None:
                raise ValueError("CompiledGenerator: this conditional generator needs labels")
            if isinstance(z, Tensor) and z.requires_grad:
                raise RuntimeError("CompiledGenerator is inference only: z requires grad (use torch.no_grad() "
                                   "or detach it)")
            with torch.no_grad():  # the embedding's weight requires grad; nothing here is trained
                z = self.front.net_input(z, labels)
        elif labels is not None:
            raise ValueError("CompiledGenerator: labels given to an unconditional generator")
        y = self.chain(z, out)
        if out is not None or self.tail is None:
            return y
        return y.view(y.shape[0], *self.tail)

    def extra_repr(self) -> str:
        layers = ", ".join(f"{n}: {f}" for n, f in zip(self.layer_names, self.layer_formats))
        return (f"{self.in_features} -> {self.out_features}, layers=[{layers}], tail={self.tail}, "
                f"weights={self.weight_bytes / 1e6:.2f} MB")

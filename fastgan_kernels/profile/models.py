"""The generators the profiler runs, in each variant: eager, torch.compile, fused with a fastgan backend.

The fused variant comes from ``fastgan_kernels.fuse(model, backend=...)``. Until that
converter is importable, a minimal stand-in here replaces the ``Linear`` + activation
pairs of the generator's ``nn.Sequential`` with calls to ``fastgan_kernels.fused_linear``
(the same op the converter's modules call); the report names which one was used.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .. import backends
from ..models import seed_generator, wide_generator

MODELS = {"seed": seed_generator, "wide": wide_generator}
BACKENDS = ("eager", "compile", "auto", "cpu_ext", "triton", "cuda_ext", "reference")
EXT_OP = "fused_linear_fwd"


class _StandInFusedLinear(nn.Module):
    """Linear + activation as one fastgan_kernels.fused_linear call (used only while fuse() is missing)."""

    def __init__(self, linear: nn.Linear, activation: str, slope: float, backend: str):
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias
        self.activation, self.slope, self.backend = activation, slope, backend

    def forward(self, x):
        from ..ops import fused_linear

        return fused_linear(x, self.weight, self.bias, self.activation, self.slope, self.backend)


def _stand_in_fuse(model: nn.Module, backend: str) -> nn.Module:
    acts = {nn.LeakyReLU: "leaky_relu", nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
    model = copy.deepcopy(model)
    seq = model.net
    layers, i = [], 0
    while i < len(seq):
        layer = seq[i]
        nxt = seq[i + 1] if i + 1 < len(seq) else None
        if isinstance(layer, nn.Linear) and type(nxt) in acts:
            slope = getattr(nxt, "negative_slope", 0.0)
            layers.append(_StandInFusedLinear(layer, acts[type(nxt)], slope, backend))
            i += 2
        else:
            layers.append(layer)
            i += 1
    model.net = nn.Sequential(*layers)
    return model


def fuse_model(model: nn.Module, backend: str) -> tuple[nn.Module, str]:
    """(fused model, how it was fused)."""
    try:
        from .. import convert

        fuse = convert.fuse
    except (ImportError, AttributeError):
        return _stand_in_fuse(model, backend), "stand-in fusion (fastgan_kernels.fuse is not available yet)"
    return fuse(model, backend=backend), "fastgan_kernels.fuse(model)"


def backend_problem(backend: str, device: torch.device) -> str:
    """Why ``backend`` cannot be profiled on ``device`` ("" when it can)."""
    if backend not in BACKENDS:
        return f"backend must be one of {BACKENDS}, got {backend!r}"
    if backend in ("eager", "compile", "auto", "reference"):
        return ""
    if backend == "triton" and device.type != "cuda":
        return "Triton runs CPU tensors only in its interpreter, a correctness tool: profile triton on CUDA"
    return backends.unavailable_reason(backend, device, EXT_OP)


def build(name: str, backend: str, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, dict]:
    """The generator ``name`` on ``device`` in ``dtype``, in the variant ``backend``; plus a description."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    problem = backend_problem(backend, device)
    if problem:
        raise RuntimeError(f"backend {backend!r} cannot run on {device.type}: {problem}")
    torch.manual_seed(0)
    base = MODELS[name]().eval().to(device=device, dtype=dtype)
    info = {"model": name, "backend": backend, "latent_dim": base.latent_dim,
            "image_shape": [base.channels, base.img_size, base.img_size]}
    if backend == "eager":
        info["variant"] = "eager PyTorch (nn.Linear + activation modules)"
        return base, info
    if backend == "compile":
        info["variant"] = "torch.compile(model) (default mode)"
        return torch.compile(base), info
    model, how = fuse_model(base, backend)
    info["variant"] = how
    info["resolved_backend"] = backends.resolve(backend, device, EXT_OP)
    return model, info

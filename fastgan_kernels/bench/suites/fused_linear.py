"""fused_linear: ``leaky_relu(x @ W.T + b, 0.2)`` on the generators' layer shapes.

Cases: every (K, N) of SEED_GENERATOR_LAYERS and WIDE_GENERATOR_LAYERS at batch
M in {64, 1024}, plus (M, K, N) = (1024, 4096, 4096); float32 and bfloat16 on the CPU,
float16 and bfloat16 on CUDA. ``--quick`` keeps the seed layers at both batches and the
wide layers at M=64. Providers: eager (``F.linear`` + ``F.leaky_relu``), torch.compile
of the same function, and each fastgan backend.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ... import activations
from ...models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS
from ...ops import fused_linear as fastgan_fused_linear
from ...ops import reference as reference_ops
from .. import providers
from ..registry import Case, Suite

OP = "fused_linear"
SLOPE = 0.2
BATCHES = (64, 1024)
EXTRA_SHAPES = ((1024, 4096, 4096),)
DTYPES = {"cpu": (torch.float32, torch.bfloat16), "cuda": (torch.float16, torch.bfloat16)}


def eager_fn(x, weight, bias):
    return F.leaky_relu(F.linear(x, weight, bias), SLOPE)


def fastgan_fn(x, weight, bias, backend="auto"):
    return fastgan_fused_linear(x, weight, bias, "leaky_relu", SLOPE, backend)


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    m, k, n = dims["M"], dims["K"], dims["N"]
    size = torch.empty((), dtype=dtype).element_size()
    return Case(OP, (("M", m), ("K", k), ("N", n)), dtype, device,
                flops=2.0 * m * k * n,
                bytes=float((m * k + n * k + n + m * n) * size),
                params=(("activation", "leaky_relu"), ("negative_slope", SLOPE)))


def shapes(quick: bool) -> list[tuple[int, int, int]]:
    layers = list(dict.fromkeys(SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS))
    if quick:
        out = [(m, k, n) for m in BATCHES for k, n in SEED_GENERATOR_LAYERS]
        out += [(64, k, n) for k, n in WIDE_GENERATOR_LAYERS]
    else:
        out = [(m, k, n) for m in BATCHES for k, n in layers] + list(EXTRA_SHAPES)
    return list(dict.fromkeys(out))


def default_cases(device: str, quick: bool) -> list[Case]:
    return [make_case({"M": m, "K": k, "N": n}, dtype, device)
            for (m, k, n) in shapes(quick) for dtype in DTYPES[device]]


def make_inputs(case: Case):
    """x ~ N(0, 1); W and b ~ U(-1/sqrt(K), 1/sqrt(K)) like nn.Linear: outputs of order 1."""
    d = case.dims
    gen = torch.Generator().manual_seed(d["M"] * 1_000_003 + d["K"] * 1009 + d["N"])
    bound = d["K"] ** -0.5
    x = torch.randn(d["M"], d["K"], generator=gen)
    w = torch.empty(d["N"], d["K"]).uniform_(-bound, bound, generator=gen)
    b = torch.empty(d["N"]).uniform_(-bound, bound, generator=gen)
    return tuple(t.to(device=case.device, dtype=case.dtype) for t in (x, w, b))


def reference(case: Case, inputs) -> torch.Tensor:
    x, w, b = inputs
    return reference_ops.fused_linear(x, w, b, activations.Activation.LEAKY_RELU, SLOPE)


SUITE = Suite(
    op=OP,
    description="act(x @ W.T + b) with LeakyReLU(0.2), on the generators' layer shapes",
    shape_names=("M", "K", "N"),
    make_case=make_case,
    default_cases=default_cases,
    make_inputs=make_inputs,
    reference=reference,
    providers=[
        providers.eager(eager_fn, "F.leaky_relu(F.linear(x, W, b), 0.2)"),
        providers.compiled(eager_fn),
        *providers.fastgan_backends(fastgan_fn, "fused_linear_fwd",
                                    kernel_modules={"triton": "fastgan_kernels.triton.fused_linear"}),
    ],
    dtypes=DTYPES,
    notes={"reference": "fastgan_kernels.ops.reference.fused_linear (float32 compute)",
           "compile": providers.COMPILE_NOTE},
    targets={("cpu", "float32"): 1.15, ("cpu", "bfloat16"): 1.2},
    # 0.5 s of blocks per provider (still ~40 blocks: shorter ones) and at most 4 s, so that the whole
    # default run (every suite) stays within 5 minutes on the 2-core CPU.
    timing={"default": {"min_run_time": 0.5, "max_run_time": 4.0}},
)

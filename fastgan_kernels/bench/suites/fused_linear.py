"""fused_linear: ``leaky_relu(x @ W.T + b, 0.2)`` on the generators' layer shapes, and the
activations of transformer-style MLPs (gelu, gelu_tanh, silu, elu).

Cases: every (K, N) of SEED_GENERATOR_LAYERS and WIDE_GENERATOR_LAYERS at batch
M in {64, 1024}, plus (M, K, N) = (1024, 4096, 4096); float32 and bfloat16 on the CPU,
float16 and bfloat16 on CUDA. ``--quick`` keeps the seed layers at both batches and the
wide layers at M=64. Providers: eager (``F.linear`` + ``F.leaky_relu``), torch.compile
of the same function, and each fastgan backend.

New-activation rows (shape ``act=<name>``): the seed layers at M in {64, 1024} (M=64 for
``--quick``) in float32 on the CPU (the fp16 dtype on CUDA), each activation against
eager ``F.linear`` + ``F.gelu`` / ``F.gelu(approximate="tanh")`` / ``F.silu`` /
``F.elu``; their own target line (``checks``): fused fp32 >= 1.15x eager, geomean over
those rows. The suite-wide geomean targets (``targets``) average over every row of their
dtype, these included.
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
from . import _common

OP = "fused_linear"
SLOPE = 0.2
DEFAULT_ACT = "leaky_relu"
NEW_ACTS = ("gelu", "gelu_tanh", "silu", "elu")
PARAM = {"leaky_relu": SLOPE, "elu": 1.0}  # the activation's parameter (0 where it has none)
NEW_ACT_TARGET = 1.15  # cpu fp32, geomean over the new-activation rows
NEW_ACT_DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float16,)}
# The torch spelling of each activation: the eager and torch.compile peers.
TORCH_ACT = {
    "leaky_relu": lambda z, p: F.leaky_relu(z, p),
    "gelu": lambda z, p: F.gelu(z),
    "gelu_tanh": lambda z, p: F.gelu(z, approximate="tanh"),
    "silu": lambda z, p: F.silu(z),
    "elu": lambda z, p: F.elu(z, p),
}
BATCHES = (64, 1024)
EXTRA_SHAPES = ((1024, 4096, 4096),)
DTYPES = {"cpu": (torch.float32, torch.bfloat16), "cuda": (torch.float16, torch.bfloat16)}


def eager_fn(x, weight, bias, act=DEFAULT_ACT, param=SLOPE):
    return TORCH_ACT[act](F.linear(x, weight, bias), param)


def fastgan_fn(x, weight, bias, act=DEFAULT_ACT, param=SLOPE, backend="auto"):
    return fastgan_fused_linear(x, weight, bias, act, param, backend)


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    m, k, n = dims["M"], dims["K"], dims["N"]
    act = dims.get("act", DEFAULT_ACT)
    size = torch.empty((), dtype=dtype).element_size()
    shape = (("M", m), ("K", k), ("N", n)) + ((("act", act),) if act != DEFAULT_ACT else ())
    return Case(OP, shape, dtype, device,
                flops=2.0 * m * k * n,
                bytes=float((m * k + n * k + n + m * n) * size),
                params=(("activation", act), ("negative_slope", PARAM.get(act, 0.0))))


def shapes(quick: bool) -> list[tuple[int, int, int]]:
    layers = list(dict.fromkeys(SEED_GENERATOR_LAYERS + WIDE_GENERATOR_LAYERS))
    if quick:
        out = [(m, k, n) for m in BATCHES for k, n in SEED_GENERATOR_LAYERS]
        out += [(64, k, n) for k, n in WIDE_GENERATOR_LAYERS]
    else:
        out = [(m, k, n) for m in BATCHES for k, n in layers] + list(EXTRA_SHAPES)
    return list(dict.fromkeys(out))


def new_activation_shapes(quick: bool) -> list[tuple[int, int, int]]:
    return [(m, k, n) for m in (BATCHES[:1] if quick else BATCHES) for k, n in SEED_GENERATOR_LAYERS]


def default_cases(device: str, quick: bool) -> list[Case]:
    cases = [make_case({"M": m, "K": k, "N": n}, dtype, device)
             for (m, k, n) in shapes(quick) for dtype in DTYPES[device]]
    return cases + [make_case({"M": m, "K": k, "N": n, "act": act}, dtype, device)
                    for act in NEW_ACTS for (m, k, n) in new_activation_shapes(quick)
                    for dtype in NEW_ACT_DTYPES[device]]


def make_inputs(case: Case):
    """x ~ N(0, 1); W and b ~ U(-1/sqrt(K), 1/sqrt(K)) like nn.Linear: outputs of order 1."""
    d = case.dims
    gen = torch.Generator().manual_seed(d["M"] * 1_000_003 + d["K"] * 1009 + d["N"])
    bound = d["K"] ** -0.5
    x = torch.randn(d["M"], d["K"], generator=gen)
    w = torch.empty(d["N"], d["K"]).uniform_(-bound, bound, generator=gen)
    b = torch.empty(d["N"]).uniform_(-bound, bound, generator=gen)
    tensors = tuple(t.to(device=case.device, dtype=case.dtype) for t in (x, w, b))
    return tensors + (case.param("activation"), case.param("negative_slope"))  # every provider: fn(*inputs)


def reference(case: Case, inputs) -> torch.Tensor:
    x, w, b, act, param = inputs
    return reference_ops.fused_linear(x, w, b, activations.check_activation(act, param), param)


def checks(rows, skipped) -> list[dict]:
    """The new activations' own target line: fused >= 1.15x eager (cpu fp32), geomean over their rows."""
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        new = [r for r in group if r.shape.get("act") in NEW_ACTS]
        if not new:
            continue
        target = NEW_ACT_TARGET if (device, dtype) == ("cpu", "float32") else None
        what = (f"new activations ({', '.join(NEW_ACTS)}) fused >= {NEW_ACT_TARGET:.2f}x eager (geomean over "
                f"the suite's shapes)" if target else f"new activations ({', '.join(NEW_ACTS)}) vs eager (geomean)")
        values = {p: [r.speedup_vs_eager for r in _common.good(new, p)] for p in _common.fastgan_providers(new)}
        lines = _common.geomean_check(OP, device, dtype, what, target, values, name="new_activations")
        if target is not None and not lines:
            lines = [_common.not_measured(OP, device, dtype, what, skipped, "new_activations")]
        out += lines
    return out


SUITE = Suite(
    op=OP,
    description="act(x @ W.T + b) with LeakyReLU(0.2), on the generators' layer shapes; gelu, gelu_tanh, silu "
                "and elu on the seed generator's",
    shape_names=("M", "K", "N"),
    make_case=make_case,
    default_cases=default_cases,
    make_inputs=make_inputs,
    reference=reference,
    providers=[
        providers.eager(eager_fn, "F.leaky_relu(F.linear(x, W, b), 0.2) (act=gelu: F.gelu(F.linear(...)), ...)"),
        providers.compiled(eager_fn),
        *providers.fastgan_backends(fastgan_fn, "fused_linear_fwd",
                                    kernel_modules={"triton": "fastgan_kernels.triton.fused_linear"}),
    ],
    dtypes=DTYPES,
    notes={"reference": "fastgan_kernels.ops.reference.fused_linear (float32 compute)",
           "compile": providers.COMPILE_NOTE,
           "new activations": "act=gelu|gelu_tanh|silu|elu rows: the seed layers in fp32 (CPU); target line: "
                              f"fused >= {NEW_ACT_TARGET}x eager, geomean over those rows (cpu fp32)"},
    targets={("cpu", "float32"): 1.15, ("cpu", "bfloat16"): 1.2},
    checks=checks,
    # 0.5 s of blocks per provider (still ~40 blocks: shorter ones) and at most 4 s, so that the whole
    # default run (every suite) stays within 5 minutes on the 2-core CPU.
    timing={"default": {"min_run_time": 0.5, "max_run_time": 4.0}},
)

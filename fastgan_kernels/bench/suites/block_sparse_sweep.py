"""block_sparse_sweep: where the block-sparse kernel stops beating the dense fused kernel.

The same op and inputs as the block_sparse_linear suite (``leaky_relu(x @ W.T + b, 0.2)``, W pruned
in 32 x 32 blocks by block norm), at low sparsities: default 10%..60% in steps of 10% on two
layers of the wide generator (M=64 K=2048 N=4096, M=1024 K=1024 N=2048); full grid 5%..75% in steps
of 5% on five shapes; quick 20/40/60% on one. Providers: eager dense, the dense fused kernel
(``fastgan_kernels.fused_linear`` on the masked dense weight, backend auto) and each fastgan
block-sparse backend; "vs peer" is the block-sparse kernel's speed-up over the dense fused one.

The summary gives the break-even sparsity: where the geometric mean over the shapes of that
speed-up crosses 1x, interpolated (in log speed-up) between the two sweep points around it.
``fastgan_kernels.convert.prune.BREAK_EVEN_SPARSITY`` cites it.
"""
from __future__ import annotations

import dataclasses
import math

import torch

from ... import backends
from ...ops.fused_linear import fused_linear
from .. import providers
from ..registry import Provider, Suite
from ..summary import geomean, suite_check
from . import _common
from . import block_sparse_linear as bs

OP = "block_sparse_sweep"
BLOCK = 32
DENSE = "fastgan fused_linear (dense)"
DEFAULT_SHAPES = ((64, 2048, 4096), (1024, 1024, 2048))
FULL_SHAPES = ((64, 1024, 2048), (64, 2048, 4096), (1024, 1024, 2048), (1024, 2048, 4096), (1024, 4096, 4096))
DEFAULT_SPARSITIES = tuple(round(0.1 * i, 2) for i in range(1, 7))
FULL_SPARSITIES = tuple(round(0.05 * i, 2) for i in range(1, 16))


def make_case(dims, dtype, device):
    return dataclasses.replace(bs.make_case(dims, dtype, device), op=OP)


def _cases(shapes, sparsities, device):
    return [make_case({"M": m, "K": k, "N": n, "sparsity": bs.pct(s), "block": BLOCK}, dtype, device)
            for (m, k, n) in shapes for s in sparsities for dtype in bs.DTYPES[device]]


def default_cases(device, quick):
    if quick:
        return _cases(DEFAULT_SHAPES[1:], (0.2, 0.4, 0.6), device)
    return _cases(DEFAULT_SHAPES, DEFAULT_SPARSITIES, device)


def full_cases(device):
    return _cases(FULL_SHAPES, FULL_SPARSITIES, device)


def dense_skip(case) -> str:
    if backends.resolve("auto", torch.device(case.device), "fused_linear_fwd") == "reference":
        return "no fused dense kernel runs here (fastgan_kernels.fused_linear would use its reference)"
    return ""


def dense_build(case, inputs):
    x, w, b = inputs.x, inputs.w, inputs.b
    return lambda: fused_linear(x, w, b, "leaky_relu", bs.SLOPE, "auto")


# ----------------------------------------------------------------------------- break-even
def crossing(points: list[tuple[float, float]]) -> tuple[float | None, str]:
    """The sparsity from which ``ratio`` (speed-up over dense) stays >= 1, from sorted (sparsity, ratio).

    Returns (value, how): how is "interpolated", "below" (faster already at the lowest point:
    value is that point) or "above" (never faster: value None).
    """
    if not points:
        return None, "above"
    slower = [i for i, (_, r) in enumerate(points) if r < 1.0]
    if not slower:
        return points[0][0], "below"
    i = slower[-1]
    if i == len(points) - 1:
        return None, "above"
    (s0, r0), (s1, r1) = points[i], points[i + 1]
    t = -math.log(r0) / (math.log(r1) - math.log(r0))
    return s0 + t * (s1 - s0), "interpolated"


def _describe(value, how, points) -> str:
    if how == "below":
        return f"<= {value:.2f} (faster already at the lowest sparsity swept)"
    if how == "above":
        return f"> {points[-1][0]:.2f} (never faster in the sweep)" if points else "not measured"
    return f"{value:.2f}"


def break_even(rows, provider: str) -> dict:
    """{"value", "how", "curve": [(sparsity, geomean ratio)], "per_shape": {shape: (value, how, points)}}."""
    by_shape: dict = {}
    for r in _common.good(rows, provider):
        if r.speedup_vs_peer:
            key = (r.shape["M"], r.shape["K"], r.shape["N"])
            by_shape.setdefault(key, {})[r.shape["sparsity"] / 100] = r.speedup_vs_peer
    common = sorted(set.intersection(*(set(v) for v in by_shape.values()))) if by_shape else []
    curve = [(s, geomean(v[s] for v in by_shape.values())) for s in common]
    value, how = crossing(curve)
    per_shape = {shape: (*crossing(sorted(v.items())), sorted(v.items())) for shape, v in by_shape.items()}
    return {"value": value, "how": how, "curve": curve, "per_shape": per_shape}


def checks(rows, skipped) -> list[dict]:
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        head = _common.head(OP, device, dtype, f"break-even sparsity at block {BLOCK}", False)
        provs = _common.fastgan_providers(group)
        if not provs:
            out.append(suite_check(OP, device, dtype, head + ": NOT MEASURED, no fastgan block-sparse backend ran"
                                   + _common.skip_note(skipped, device), None, name="break_even"))
        for p in provs:
            be = break_even(group, p)
            around = ", ".join(f"{s:.2f} {g:.2f}x" for s, g in be["curve"])
            shapes = "; ".join(f"M={m} K={k} N={n} {_describe(v, how, pts)}"
                               for (m, k, n), (v, how, pts) in sorted(be["per_shape"].items()))
            text = (f"{head}: {p} beats {DENSE} from sparsity {_describe(be['value'], be['how'], be['curve'])} "
                    f"(geomean over {len(be['per_shape'])} shapes of its speed-up over dense: {around}; "
                    f"per shape: {shapes})")
            out.append(suite_check(OP, device, dtype, text, "info", name="break_even", provider=p,
                                   measured=be["value"]))
    return out


SUITE = Suite(
    op=OP,
    description=f"block_sparse_linear at low sparsity (block {BLOCK}) against the dense fused kernel: the "
                "break-even sparsity",
    shape_names=bs.SUITE.shape_names,
    make_case=make_case,
    default_cases=default_cases,
    full_cases=full_cases,
    make_inputs=bs.make_inputs,
    reference=bs.reference,
    compare=bs.compare,
    providers=[
        bs.SUITE.provider("eager"),
        Provider(DENSE, "peer", dense_build, dense_skip,
                 description="fastgan_kernels.fused_linear(x, W_masked, b, 'leaky_relu', 0.2): the dense kernel"),
        *providers.fastgan_backends(None, "bsr_linear_fwd", build=bs.fastgan_build,
                                    kernel_modules={"triton": "fastgan_kernels.triton.block_sparse_linear"}),
    ],
    dtypes=bs.DTYPES,
    notes={"vs peer": f"the block-sparse kernel's speed-up over {DENSE} on the same pruned weight",
           "break-even": "where the geomean over the shapes of that speed-up crosses 1x (log-linear interpolation); "
                         "fastgan_kernels.convert.prune.BREAK_EVEN_SPARSITY holds the CPU value"},
    peer_group=(DENSE,),
    peer_label="dense fused kernel",
    checks=checks,
    timing=bs.SUITE.timing,
)

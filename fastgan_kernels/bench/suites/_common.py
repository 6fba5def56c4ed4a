"""Helpers the block-sparse and int8 suites share: whole-generator cases, signal-to-noise
comparisons and the wording of their target lines."""
from __future__ import annotations

import copy
import math
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ... import metrics, testing
from ...models import (SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS, linear_shapes, seed_generator,
                       wide_generator)
from ..registry import SHORT_DTYPE, Case
from ..summary import geomean, suite_check, verdict

GENERATORS: dict[str, Callable[[], nn.Module]] = {"seed": seed_generator, "wide": wide_generator}
PSNR_RANGE = 2.0  # images in [-1, 1] (Tanh)


def is_model(case: Case) -> bool:
    return "model" in case.dims


def generator(name: str, dtype: torch.dtype = torch.float32, device: str = "cpu") -> nn.Module:
    """The named generator with a fixed random initialisation (the same weights in every run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20240601 + len(name))
        model = GENERATORS[name]()
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def generator_layers(name: str) -> list[tuple[int, int]]:
    """(in_features, out_features) of the named generator's layers (without building the big ones)."""
    known = {"seed": SEED_GENERATOR_LAYERS, "wide": WIDE_GENERATOR_LAYERS}
    factory = GENERATORS[name]
    if name in known and factory is (seed_generator if name == "seed" else wide_generator):
        return list(known[name])
    return linear_shapes(factory())


def latent(model: nn.Module, batch: int, seed: int = 0, dtype=torch.float32, device="cpu") -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 7919 + batch)
    return torch.randn(batch, model.latent_dim, generator=gen).to(device=device, dtype=dtype)


def frozen_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def float_errors(case: Case, out: torch.Tensor, expected: torch.Tensor) -> tuple[float, float, bool]:
    """Max errors and the float tolerance check (testing.FORWARD) of the project's kernels."""
    if not isinstance(out, torch.Tensor) or out.shape != expected.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"output shape {got} differs from the reference's {tuple(expected.shape)}")
    abs_err, rel_err = testing.max_errors(out, expected)
    tol = testing.tolerance(expected.dtype)
    return abs_err, rel_err, bool(torch.allclose(out.float(), expected.float(), **tol))


def snr_figures(out: torch.Tensor, expected: torch.Tensor, model: bool) -> dict:
    """SQNR of the output against the reference and, for whole generators, PSNR (data range 2)."""
    figures = {"sqnr_db": metrics.sqnr(expected.float(), out.float())}
    if model:
        figures["psnr_db"] = metrics.psnr(expected.float(), out.float(), PSNR_RANGE)
    return figures


# ----------------------------------------------------------------------------- target lines
def group_rows(rows: Sequence) -> dict[tuple[str, str], list]:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r.device, r.dtype), []).append(r)
    return groups


def good(rows: Sequence, provider: Optional[str] = None) -> list:
    return [r for r in rows if r.status == "ok" and r.correct and (provider is None or r.provider == provider)]


def fastgan_providers(rows: Sequence) -> list[str]:
    return list(dict.fromkeys(r.provider for r in rows if r.kind == "fastgan"))


def skip_note(skipped: Sequence, device: str) -> str:
    reasons = sorted({s.reason for s in skipped if s.device == device and s.provider.startswith("fastgan:")})
    return f" ({'; '.join(reasons)})" if reasons else ""


def head(op: str, device: str, dtype: str, what: str, target: bool = True) -> str:
    return f"{'target ' if target else ''}{op} {device} {SHORT_DTYPE.get(dtype, dtype)}: {what}"


def geomean_check(op: str, device: str, dtype: str, what: str, target: Optional[float], values: dict,
                  name: str, unit: str = "x") -> list[dict]:
    """One line per provider: the geomean of ``values[provider]`` (a list) against ``target``.

    ``target`` None gives an information line (no verdict).
    """
    checks = []
    for provider, vals in values.items():
        g = geomean(vals)
        if g is None:
            continue
        met = (g >= target) if target is not None else "info"
        text = head(op, device, dtype, what, target is not None) + f": {provider} {g:.3f}{unit}"
        text += f" over {len(vals)} row{'s' if len(vals) != 1 else ''}"
        if target is not None:
            text += f", {verdict(met)}"
        checks.append(suite_check(op, device, dtype, text, met, name=name, provider=provider, measured=g,
                                  target=target))
    return checks


def not_measured(op: str, device: str, dtype: str, what: str, skipped: Sequence, name: str) -> dict:
    text = head(op, device, dtype, what) + ": NOT MEASURED, no fastgan backend ran" + skip_note(skipped, device)
    return suite_check(op, device, dtype, text, None, name=name)


def db(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.1f}"

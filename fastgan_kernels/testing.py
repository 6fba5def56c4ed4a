"""Tolerances for comparing kernels with their references, stated once for tests and benchmarks.

The references compute in float32 from the same (possibly rounded) inputs, so the
difference left is summation order plus one rounding of the output to its dtype.
Inputs in the tests are scaled like nn.Linear's initialisation (outputs of order 1);
the tolerances below are for that regime and for K up to a few thousand.
"""
from __future__ import annotations

import torch

# dtype -> (atol, rtol) for outputs of forward kernels.
FORWARD = {
    torch.float32: (2e-4, 2e-4),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 2e-2),
}

# Gradients sum over the batch as well, so they get a looser absolute tolerance.
BACKWARD = {
    torch.float32: (1e-3, 1e-3),
    torch.float16: (2e-2, 1e-2),
    torch.bfloat16: (1e-1, 3e-2),
}


def tolerance(dtype: torch.dtype, backward: bool = False) -> dict:
    atol, rtol = (BACKWARD if backward else FORWARD)[dtype]
    return {"atol": atol, "rtol": rtol}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, backward: bool = False, **kw) -> None:
    """torch.testing.assert_close with the project's tolerance for ``expected.dtype``."""
    tol = tolerance(expected.dtype, backward)
    tol.update(kw)
    torch.testing.assert_close(actual, expected, **tol)


def max_errors(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max rel error) of ``actual`` against ``expected``, in float64."""
    a, e = actual.double(), expected.double()
    diff = (a - e).abs()
    if diff.numel() == 0:
        return 0.0, 0.0
    abs_err = diff.max().item()
    rel_err = (diff / e.abs().clamp_min(1e-6)).max().item()
    return abs_err, rel_err

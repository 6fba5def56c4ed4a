"""Argument checks shared by the ops: clear errors naming the argument, before any kernel runs."""
from __future__ import annotations

from typing import Optional

import torch

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class DtypeMismatchError(TypeError, RuntimeError):
    """A dtype that does not match: a TypeError naming the argument, and a RuntimeError like the one
    ``nn.Linear`` raises for the same input (so code written against nn.Linear still catches it)."""


class DeviceMismatchError(ValueError, RuntimeError):
    """A device that does not match: a ValueError naming the argument, and a RuntimeError like
    ``nn.Linear``'s ("Expected all tensors to be on the same device")."""


def check_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_float(t: torch.Tensor, name: str) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise DtypeMismatchError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")


def check_same(t: torch.Tensor, ref: torch.Tensor, name: str, ref_name: str, dtype: bool = True) -> None:
    if t.device != ref.device:
        raise DeviceMismatchError(f"{name} must be on {ref_name}'s device {ref.device}, got {t.device} "
                                  f"(expected all tensors to be on the same device, as nn.Linear does)")
    if dtype and t.dtype != ref.dtype:
        raise DtypeMismatchError(f"{name} must have {ref_name}'s dtype {ref.dtype}, got {t.dtype} "
                                 f"(like nn.Linear's mat1 and mat2, they must have the same dtype)")


def check_input(x: torch.Tensor, k: int, op: str) -> int:
    """x [..., K]; returns the number of rows M. M = 0 (an empty batch) is valid, as for nn.Linear:
    the ops then return an empty output without launching a kernel (see :func:`is_empty`)."""
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least 1 dimension [..., in_features], got a scalar")
    if x.shape[-1] != k:
        raise ValueError(f"{op}: x.shape[-1] must equal in_features = {k}, got x of shape {tuple(x.shape)}")
    return x.numel() // k if k else 0


def is_empty(x: torch.Tensor) -> bool:
    """An empty batch (M = 0 rows of a non-empty K): the ops answer it with plain PyTorch, which
    gives an empty output (and, for training, zero weight / bias gradients) like nn.Linear."""
    return x.numel() == 0


def check_bias(bias: Optional[torch.Tensor], x: torch.Tensor, n: int, op: str, dtype: bool = True) -> None:
    if bias is None:
        return
    check_tensor(bias, f"{op}: bias")
    check_same(bias, x, f"{op}: bias", "x", dtype=dtype)
    if tuple(bias.shape) != (n,):
        raise ValueError(f"{op}: bias must have shape (out_features,) = ({n},), got {tuple(bias.shape)}")


def _plain_linear(x, weight, bias) -> bool:
    """The common case in one expression (a layer's call runs this every time, ~1 us): float
    x [..., K] with rows, weight [N, K] non-empty, bias [N] or None, one dtype and device.
    Anything else (a non-tensor included) goes to the checks that name what is wrong."""
    try:
        ws = weight.shape
        return (x.dtype in FLOAT_DTYPES and weight.dtype == x.dtype and len(ws) == 2 and ws[0] > 0
                and x.shape[-1] == ws[1] > 0 and x.numel() > 0 and weight.device == x.device
                and (bias is None or (bias.dtype == x.dtype and bias.dim() == 1 and bias.shape[0] == ws[0]
                                      and bias.device == x.device))
                and isinstance(x, torch.Tensor))
    except (AttributeError, IndexError, TypeError):
        return False


def check_linear(x, weight, bias: Optional[torch.Tensor], op: str) -> tuple[int, int, int]:
    """Checks x [..., K], weight [N, K], bias [N] | None; returns (M, K, N)."""
    if _plain_linear(x, weight, bias):
        n, k = weight.shape
        return x.numel() // k, k, n
    check_tensor(x, f"{op}: x")
    check_tensor(weight, f"{op}: weight")
    check_float(x, f"{op}: x")
    check_same(weight, x, f"{op}: weight", "x")
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight must be 2-D [out_features, in_features], got shape {tuple(weight.shape)}")
    n, k = weight.shape
    if n == 0 or k == 0:
        raise ValueError(f"{op}: weight must be non-empty, got shape {tuple(weight.shape)}")
    m = check_input(x, k, op)
    check_bias(bias, x, n, op)
    return m, k, n

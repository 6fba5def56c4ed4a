"""Shared test set-up.

Triton kernels run on CUDA tensors when a GPU exists and in Triton's interpreter on the
CPU otherwise; the interpreter must be switched on before triton is first imported,
which is why this happens here, at collection time.
"""
import contextlib
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from fastgan_kernels import backends  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def backend_params(ext_op: str, device: torch.device = DEVICE, include=("reference", "cpu_ext", "triton", "cuda_ext")):
    """pytest params for every concrete backend, skipped with its reason where it cannot run.

    CPU-side backends are tested on CPU tensors, the others on ``device``.
    """
    params = []
    for name in include:
        dev = torch.device("cpu") if name == "cpu_ext" else (torch.device("cuda") if name == "cuda_ext" else device)
        if name == "cuda_ext" and not torch.cuda.is_available():
            reason = "cuda_ext needs a CUDA GPU"
        else:
            reason = backends.unavailable_reason(name, dev, ext_op)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        if name == "cuda_ext":
            marks.append(pytest.mark.cuda)
        params.append(pytest.param((name, dev), id=name, marks=marks))
    return params


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set to ``n`` inside the block, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def cuda_kernel_marks(ext_op: str) -> list:
    """pytestmark for a file of CUDA C++ kernel tests: marked ``cuda``, skipped with the reason
    unless a CUDA GPU is present and the extension was built with ``ext_op``'s CUDA kernel."""
    from fastgan_kernels import _ext

    if not torch.cuda.is_available():
        reason = "needs a CUDA GPU (torch.cuda.is_available() is False)"
    elif not _ext.has_kernel(ext_op, "CUDA"):
        reason = _ext.REASON or "the extension fastgan_kernels._C was built without its CUDA kernels"
    else:
        reason = ""
    return [pytest.mark.cuda, pytest.mark.skipif(bool(reason), reason=reason)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)

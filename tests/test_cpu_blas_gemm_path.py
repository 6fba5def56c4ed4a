"""The fp32 vendor-GEMM path below AVX-512 (csrc/cpu/gemm_blas_f32.cpp: ATen sgemm, then
our bias + activation epilogue in place; backward GEMMs with the prologue A * act'(Y)
materialised first), against the plain-PyTorch reference, through the public op and
autograd: every activation, odd and strided shapes, 1 and 2 threads. The AVX2
micro-kernel it replaces stays covered by test_cpu_fused_linear_kernels.py (forced off)."""
from __future__ import annotations

import itertools

import pytest
import torch

import fastgan_kernels
from fastgan_kernels import _ext, testing

from conftest import torch_threads  # noqa: E402

pytestmark = pytest.mark.skipif(
    not _ext.has_kernel("fused_linear_fwd", "CPU") or int(_ext.max_isa()) < _ext.Isa.AVX2,
    reason=_ext.REASON or "needs the extension's CPU kernels on an AVX2 machine")

ACTIVATIONS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "elu"]
# (M, K, N): odd sizes around the kBlasMinFlops threshold (gemm_dispatch.cpp) on both sides.
SHAPES = [(1, 1000, 17), (17, 1000, 1), (17, 33, 1000), (1000, 17, 33), (64, 100, 256), (1, 1, 1)]


@pytest.fixture
def blas_path():
    with _ext.cpu_isa("avx2"), _ext.blas_gemm(True) as path:
        assert path == "blas_fp32_epilogue"
        yield


def run_both(x0, w0, b0, activation, layout=lambda t: t):
    results = []
    for backend in ("cpu_ext", "reference"):
        x, w = layout(x0).requires_grad_(), layout(w0).requires_grad_()
        b = None if b0 is None else b0.clone().requires_grad_()
        y = fastgan_kernels.fused_linear(x, w, b, activation, 0.2, backend=backend)
        (y * torch.linspace(-1, 1, y.shape[-1])).sum().backward()
        results.append((y.detach(), x.grad, w.grad, None if b is None else b.grad))
    (y, gx, gw, gb), (ry, rgx, rgw, rgb) = results
    testing.assert_close(y, ry)
    for a, e in ((gx, rgx), (gw, rgw), (gb, rgb)):
        if e is not None:
            testing.assert_close(a, e, backward=True)


def make(m, k, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(m, k, generator=g), torch.randn(n, k, generator=g) / k ** 0.5,
            torch.randn(n, generator=g) / k ** 0.5)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_and_backward_every_activation(blas_path, activation, threads):
    with torch_threads(threads):
        for i, (m, k, n) in enumerate(SHAPES):
            x, w, b = make(m, k, n, seed=i)
            run_both(x, w, b if i % 2 == 0 else None, activation)


@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_strided_operands(blas_path, layout):
    def relayout(t):
        if layout == "transposed":
            return t.t().contiguous().t()
        big = torch.zeros(t.shape[0] * 2, t.shape[1] * 3)
        big[::2, ::3] = t
        return big[::2, ::3]
    for activation in ("gelu", "leaky_relu"):
        x, w, b = make(33, 100, 65)
        run_both(x, w, b, activation, relayout)


def test_low_precision_inputs_route_to_the_avx2_kernel(blas_path):
    # 16-bit operands never take the vendor path (no converted copies); still correct.
    for dtype, activation in itertools.product((torch.bfloat16, torch.float16), ("silu", "tanh")):
        assert _ext.cpu_gemm_path(dtype) == "avx2_fp32"
        x, w, b = (t.to(dtype) for t in make(17, 100, 33))
        run_both(x, w, b, activation)


def test_output_rows_with_a_leading_dimension(blas_path):
    # a 3-D input flattened to rows, and an empty batch like nn.Linear
    x, w, b = make(2 * 40, 100, 50)
    run_both(x.reshape(2, 40, 100), w, b, "elu")
    y = fastgan_kernels.fused_linear(torch.zeros(0, 100), w, b, "relu", backend="cpu_ext")
    assert y.shape == (0, 50)

"""The Triton fused-linear kernels against the PyTorch reference.

On a CUDA machine they run on the GPU; elsewhere in Triton's interpreter
(TRITON_INTERPRET=1, set before triton is imported), hence the small shapes. The
cases cover every dtype and activation, ragged edges (M, N, K of 1 and odd sizes
against 32-wide interpreter tiles), operands with any strides (column-major views,
strided slices, a stride-0 grad_out), bias / no bias, and every need_* combination.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

triton = pytest.importorskip("triton")

import fastgan_kernels as fk  # noqa: E402
from fastgan_kernels import testing  # noqa: E402
from fastgan_kernels.ops import reference  # noqa: E402
from fastgan_kernels.triton import fused_linear as kernels  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
pytestmark = pytest.mark.skipif(DEVICE.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
                                reason="no GPU and Triton's interpreter is off (TRITON_INTERPRET != 1)")

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
IDENTITY, RELU, LEAKY, TANH, SIGMOID = range(5)
SLOPE = 0.2


def with_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as ``t`` under another memory layout."""
    if layout == "contig":
        return t
    if layout == "colmajor":  # a transposed view of a contiguous tensor
        return t.t().contiguous().t()
    if layout == "strided":  # every 2nd row, every 3rd column of a bigger buffer
        big = torch.zeros(t.shape[0] * 2, t.shape[1] * 3, dtype=t.dtype, device=t.device)
        big[::2, ::3] = t
        return big[::2, ::3]
    raise ValueError(layout)


def make(m, n, k, dtype, bias=True, x_layout="contig", w_layout="contig"):
    x = torch.randn(m, k, device=DEVICE).to(dtype)
    w = ((torch.rand(n, k, device=DEVICE) * 2 - 1) / k ** 0.5).to(dtype)
    b = ((torch.rand(n, device=DEVICE) * 2 - 1) / k ** 0.5).to(dtype) if bias else None
    return with_layout(x, x_layout), with_layout(w, w_layout), b


# (M, N, K, dtype, activation, bias, x layout, weight layout)
FORWARD_CASES = [
    (1, 5, 3, F32, LEAKY, True, "contig", "contig"),
    (17, 33, 45, F32, RELU, False, "colmajor", "contig"),
    (64, 48, 100, F32, TANH, True, "contig", "colmajor"),
    (17, 1, 1, F32, SIGMOID, True, "strided", "strided"),
    (64, 70, 64, F32, IDENTITY, True, "strided", "colmajor"),
    (1, 96, 64, F16, TANH, True, "contig", "strided"),
    (17, 40, 70, F16, LEAKY, True, "colmajor", "colmajor"),
    (64, 33, 17, F16, SIGMOID, False, "contig", "contig"),
    (64, 64, 32, BF16, RELU, True, "contig", "contig"),
    (17, 20, 99, BF16, IDENTITY, False, "strided", "contig"),
    (1, 33, 64, BF16, LEAKY, True, "contig", "colmajor"),
]


@pytest.mark.parametrize("m, n, k, dtype, act, bias, xl, wl", FORWARD_CASES)
def test_forward_matches_reference(m, n, k, dtype, act, bias, xl, wl):
    x, w, b = make(m, n, k, dtype, bias, xl, wl)
    y = kernels.fused_linear_forward(x, w, b, act, SLOPE)
    assert y.shape == (m, n) and y.dtype == dtype and y.is_contiguous()
    testing.assert_close(y, reference.fused_linear(x, w, b, act, SLOPE))


@pytest.mark.parametrize("act", [TANH, SIGMOID, LEAKY])
def test_forward_saturating_inputs_stay_finite(act):
    x, w, b = make(17, 24, 40, F32)
    x = x * 100.0  # |z| of order 100: exp() in tanh/sigmoid must neither overflow into NaN nor lose the sign
    y = kernels.fused_linear_forward(x, w, b, act, 0.01)
    assert torch.isfinite(y).all()
    testing.assert_close(y, reference.fused_linear(x, w, b, act, 0.01), rtol=1e-4, atol=1e-3)


# (M, N, K, dtype, activation, need_x, need_weight, need_bias, grad_out layout, y layout, x layout, w layout)
BACKWARD_CASES = [
    (17, 33, 45, F32, LEAKY, True, True, True, "contig", "contig", "contig", "contig"),
    (64, 40, 70, F32, TANH, True, True, True, "expanded", "colmajor", "strided", "colmajor"),
    (1, 24, 33, F32, SIGMOID, True, False, True, "colmajor", "contig", "colmajor", "contig"),
    (64, 17, 1, F32, RELU, False, True, False, "strided", "strided", "contig", "strided"),
    (17, 48, 64, F32, IDENTITY, True, True, True, "contig", None, "contig", "contig"),
    (17, 20, 30, F32, LEAKY, False, False, True, "contig", "contig", "contig", "contig"),
    (64, 64, 48, F16, LEAKY, True, True, True, "contig", "contig", "contig", "colmajor"),
    (17, 33, 64, F16, SIGMOID, False, True, True, "colmajor", "contig", "strided", "contig"),
    (64, 48, 40, BF16, TANH, True, True, False, "contig", "contig", "colmajor", "contig"),
    (1, 64, 17, BF16, RELU, True, False, False, "expanded", "contig", "contig", "strided"),
    (64, 32, 64, BF16, IDENTITY, False, True, True, "strided", None, "contig", "contig"),
]


@pytest.mark.parametrize("m, n, k, dtype, act, nx, nw, nb, gl, yl, xl, wl", BACKWARD_CASES)
def test_backward_matches_reference(m, n, k, dtype, act, nx, nw, nb, gl, yl, xl, wl):
    x, w, b = make(m, n, k, dtype, True, xl, wl)
    y = reference.fused_linear(x, w, b, act, SLOPE)
    if gl == "expanded":  # what sum()/mean() backward hands over: stride 0 along the batch
        grad = torch.randn(1, n, device=DEVICE).to(dtype).expand(m, n)
    else:
        grad = with_layout(torch.randn(m, n, device=DEVICE).to(dtype), gl)
    y = None if yl is None else with_layout(y, yl)
    got = kernels.fused_linear_backward(grad, y, x, w, act, SLOPE, nx, nw, nb)
    want = reference.fused_linear_backward(grad, y, x, w, act, SLOPE, nx, nw, nb)
    for name, g, r, needed, like in zip(("grad_x", "grad_weight", "grad_bias"), got, want, (nx, nw, nb), (x, w, b)):
        if not needed:
            assert g is None, name
            continue
        assert g.shape == like.shape and g.dtype == like.dtype, name
        testing.assert_close(g, r, backward=True, msg=lambda s, name=name: f"{name}: {s}")


def test_backward_needs_y_for_a_non_identity_activation():
    x, w, _ = make(4, 3, 5, F32)
    with pytest.raises(ValueError, match="saved output y"):
        kernels.fused_linear_backward(torch.ones(4, 3, device=DEVICE), None, x, w, TANH, SLOPE, True, True, True)


@pytest.mark.parametrize("dtype, act", [(F32, "leaky_relu"), (BF16, "sigmoid"), (F16, "relu")])
def test_op_end_to_end_forward_and_backward(dtype, act):
    """fastgan_kernels.fused_linear(backend="triton") through autograd, N-D input, against backend="reference"."""
    x, w, b = make(34, 24, 40, dtype)
    x = x.reshape(2, 17, 40)
    results = []
    for backend in ("triton", "reference"):
        leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
        y = fk.fused_linear(*leaves, act, SLOPE, backend=backend)
        y.backward(torch.linspace(-1, 1, y.numel(), device=DEVICE).reshape(y.shape).to(dtype))
        results.append((y.detach(), *(t.grad for t in leaves)))
    (y, *grads), (y_ref, *grads_ref) = results
    assert y.shape == (2, 17, 24)
    testing.assert_close(y, y_ref)
    for g, r in zip(grads, grads_ref):
        testing.assert_close(g, r, backward=True)


def test_config_pruning_clamps_blocks_to_the_shape():
    from fastgan_kernels.triton import _resources

    configs = [kernels._config(bm, bn, bk, 8, s, w) for bm, bn, bk, s, w in kernels._GPU_TILES]
    half = torch.empty(1, dtype=torch.float16)
    args = dict(a_ptr=half, b_ptr=half, PROLOGUE=0, F32_DOT=False)
    pruned = kernels._prune_configs(configs, {"M": 1, "N": 20, "K": 3000, **args})
    assert pruned and len(pruned) <= len(configs)
    assert all(c.kwargs["BLOCK_M"] == 16 and c.kwargs["BLOCK_N"] <= 32 for c in pruned)
    assert max(c.kwargs["BLOCK_K"] for c in pruned) == 128
    with _resources.target_arch(90):  # every 16-bit forward tile fits an H100 (docs/gpu_resources.md)
        assert len(kernels._prune_configs(configs, {"M": 4096, "N": 4096, "K": 4096, **args})) == len(configs)


def test_autotune_keys_bucket_batch_sizes():
    # Every new batch size must not re-run the autotune sweep on GPU: each autotuned kernel is
    # keyed on the batch bucketed to a power of two (and pruned by pow2_cap, constant per bucket).
    from fastgan_kernels.triton import _common, block_sparse_linear, int8_linear

    assert [_common.tune_key(n) for n in (0, 1, 2, 17, 32, 33, 1000, 1024)] == [1, 1, 2, 32, 32, 64, 1024, 1024]
    assert all(_common.pow2_cap(n) == _common.pow2_cap(_common.tune_key(n)) for n in range(1, 2049))
    tuned = [kernels._forward_gemm, kernels._grad_x_gemm, kernels._grad_weight_gemm, int8_linear._int8_gemm,
             block_sparse_linear._forward_kernel, block_sparse_linear._grad_x_kernel,
             block_sparse_linear._grad_values_kernel, block_sparse_linear._grad_bias_kernel]
    for kernel in tuned:
        assert "M" not in kernel.keys and "M_KEY" in kernel.keys, kernel.keys

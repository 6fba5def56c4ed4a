"""The CUDA C++ kernels of fused_linear (csrc/cuda/fused_linear.cu), against the reference.

Grids over dtype (fp32 on the SIMT kernel, fp16 / bf16 on the tensor-core kernel on
sm_80+), every activation, batch sizes 1 / 17 / 64 / 1000 and odd K / N (ragged tiles and
element-wise loads), plus layouts that reach each loader path: contiguous (16-byte
cp.async chunks), transposed views (I-major shared-memory tiles, ldmatrix.trans),
strided slices and stride-0 (expanded) gradients. Both tile configurations are reached
(small problems take 64 x 64 tiles, large ones 128 x 128).

Skipped with the reason unless a CUDA GPU is present and the extension was built with
its CUDA kernels.
"""
import pytest
import torch

import fastgan_kernels as fk
from fastgan_kernels import activations, testing
from fastgan_kernels.ops import reference

from conftest import cuda_kernel_marks  # noqa: E402

pytestmark = cuda_kernel_marks("fused_linear_fwd")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
ACTS = list(activations.NAMES)
SLOPE = 0.2
BATCHES = [1, 17, 64, 1000]
# (K, N): aligned, odd K, odd N, both odd and not multiples of any tile size.
FEATURES = [(64, 48), (33, 64), (64, 17), (129, 255)]


def _ids(v):
    return str(v).replace("torch.", "")


def make(m, k, n, dtype, bias=True, device="cuda"):
    x = torch.randn(m, k, device=device).to(dtype)
    w = ((torch.rand(n, k, device=device) * 2 - 1) / k ** 0.5).to(dtype)
    b = ((torch.rand(n, device=device) * 2 - 1) / k ** 0.5).to(dtype) if bias else None
    return x, w, b


def check_forward(x, w, b, act):
    y = fk.fused_linear(x, w, b, act, SLOPE, backend="cuda_ext")
    assert y.dtype == x.dtype and y.is_contiguous()
    assert y.shape == (*x.shape[:-1], w.shape[0])
    testing.assert_close(y, reference.fused_linear(x, w, b, act, SLOPE))
    return y


def check_backward(x, w, b, act, grad=None):
    """Autograd through the cuda_ext op against reference.fused_linear_backward from the same y."""
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    b = b.detach().requires_grad_() if b is not None else None
    y = fk.fused_linear(x, w, b, act, SLOPE, backend="cuda_ext")
    m = y.numel() // y.shape[-1]
    if grad is None:  # scaled so that grad_weight is of order 1
        grad = (torch.randn(y.shape, device=y.device) / m ** 0.5).to(y.dtype)
    y.backward(grad)
    code = activations.check_activation(act, SLOPE)
    saved = None if code == activations.Activation.IDENTITY else y.detach()
    if activations.saves_preactivation(code):  # gelu / gelu_tanh / silu: the backward reads z
        saved = reference.fused_linear(x.detach(), w.detach(), None if b is None else b.detach(), 0, 0.0)
    gx, gw, gb = reference.fused_linear_backward(grad, saved, x.detach(), w.detach(), code, SLOPE,
                                                 True, True, b is not None)
    testing.assert_close(x.grad, gx, backward=True)
    testing.assert_close(w.grad, gw, backward=True)
    if b is not None:
        testing.assert_close(b.grad, gb, backward=True)


@pytest.mark.parametrize("kn", FEATURES, ids=_ids)
@pytest.mark.parametrize("m", BATCHES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_forward_grid(dtype, act, m, kn):
    k, n = kn
    x, w, b = make(m, k, n, dtype, bias=(m != 17))
    check_forward(x, w, b, act)


@pytest.mark.parametrize("kn", FEATURES, ids=_ids)
@pytest.mark.parametrize("m", BATCHES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_backward_grid(dtype, act, m, kn):
    k, n = kn
    x, w, b = make(m, k, n, dtype, bias=(m != 64))
    check_backward(x, w, b, act)


@pytest.mark.parametrize("act", ["leaky_relu", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_large_tiles(dtype, act):
    """Enough 128 x 128 tiles to fill any GPU: the large configuration of both kernels."""
    x, w, b = make(4096, 256, 1024, dtype)
    check_forward(x, w, b, act)
    check_backward(x, w, b, act)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_deep_reduction(dtype):
    """K (forward) and M (grad_weight) span many k-tiles: the multi-stage pipeline wraps around."""
    x, w, b = make(1000, 2051, 40, dtype)
    check_forward(x, w, b, "tanh")
    check_backward(x, w, b, "tanh")


NON_CONTIGUOUS = {
    # name: (x, weight, bias) builders from (m, k, n, dtype)
    "x_transposed": lambda m, k, n, d: (torch.randn(k, m, device="cuda").to(d).t(), None, None),
    "x_strided_cols": lambda m, k, n, d: (torch.randn(m, 2 * k, device="cuda").to(d)[:, ::2], None, None),
    "x_row_slice": lambda m, k, n, d: (torch.randn(m + 3, k + 5, device="cuda").to(d)[3:, 5:], None, None),
    "w_transposed": lambda m, k, n, d: (None, ((torch.rand(k, n, device="cuda") * 2 - 1) / k ** 0.5).to(d).t(),
                                        None),
    "w_strided_bias_strided": lambda m, k, n, d: (
        None, ((torch.rand(n, 3 * k, device="cuda") * 2 - 1) / k ** 0.5).to(d)[:, ::3],
        (torch.randn(2 * n, device="cuda") * 0.1).to(d)[::2]),
}


@pytest.mark.parametrize("m,k,n", [(17, 64, 48), (64, 33, 17), (1000, 128, 256)], ids=_ids)
@pytest.mark.parametrize("layout", list(NON_CONTIGUOUS))
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_non_contiguous(dtype, layout, m, k, n):
    x, w, b = make(m, k, n, dtype)
    x2, w2, b2 = NON_CONTIGUOUS[layout](m, k, n, dtype)
    x, w, b = (x if x2 is None else x2), (w if w2 is None else w2), (b if b2 is None else b2)
    assert not (x.is_contiguous() and w.is_contiguous() and b.is_contiguous())
    for act in ("leaky_relu", "tanh"):
        check_forward(x, w, b, act)
        check_backward(x, w, b, act)


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_expanded_and_transposed_grad(dtype, act):
    """grad_out with stride 0 (from y.sum()) and as a transposed view."""
    x, w, b = make(65, 40, 24, dtype)
    check_backward(x, w, b, act, grad=torch.ones((), device="cuda", dtype=dtype).expand(65, 24))
    check_backward(x, w, b, act, grad=(torch.randn(24, 65, device="cuda") / 8).to(dtype).t())


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_nd_input(dtype):
    x = torch.randn(3, 7, 24, device="cuda").to(dtype)
    _, w, b = make(1, 24, 40, dtype)
    check_forward(x, w, b, "leaky_relu")
    check_backward(x, w, b, "leaky_relu")


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_backward_subsets(dtype):
    """Only the requested gradients are computed; the others come back undefined (None)."""
    m, k, n = 33, 20, 12
    x, w, _ = make(m, k, n, dtype)
    y = reference.fused_linear(x, w, None, "relu", SLOPE)
    grad = torch.randn(m, n, device="cuda").to(dtype)
    gx_ref, gw_ref, gb_ref = reference.fused_linear_backward(grad, y, x, w, 1, SLOPE, True, True, True)
    for need in [(True, False, False), (False, True, False), (False, False, True), (True, True, True)]:
        got = torch.ops.fastgan_ext.fused_linear_bwd(grad, y, x, w, 1, SLOPE, *need)
        for flag, g, ref in zip(need, got, (gx_ref, gw_ref, gb_ref)):
            if flag:
                testing.assert_close(g, ref, backward=True)
            else:
                assert g is None


def test_bias_gradient_many_rows():
    """grad_bias over many rows takes the split reduction (partial sums + finishing pass)."""
    m, k, n = 50000, 8, 24
    x, w, b = make(m, k, n, torch.float32)
    check_backward(x, w, b, "leaky_relu")


def test_current_stream_and_device_guard():
    """Kernels run on the current stream: results are ready after that stream synchronises."""
    x, w, b = make(256, 64, 64, torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = fk.fused_linear(x, w, b, "relu", SLOPE, backend="cuda_ext")
    side.synchronize()
    testing.assert_close(y, reference.fused_linear(x, w, b, "relu", SLOPE))

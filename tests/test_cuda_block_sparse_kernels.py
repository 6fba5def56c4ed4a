"""The CUDA C++ block-sparse kernels (csrc/cuda/block_sparse_linear.cu) against the references.

Grids over dtype (fp32 on the exact SIMT kernels, fp16 / bf16 on the tensor-core kernels on
sm_80+), every activation, every block-size pair in {16 .. 256} (bn != bk included: the BK = 16
and BK = 32 pipelines, output tiles 16 .. 128 and blocks cut into sub-tiles), ragged N / K
(padded last block row / column), sparsity 0 / 0.5 / 0.9 / 1.0 (empty block rows write
act(bias)), M in {1, 17, 256}, strided and transposed operands (element-wise loader paths),
every need_* combination of the backward, int32-only indices, an empty batch, the SDDMM's batch
split (fp32 partial sums added in a fixed order: results are bitwise reproducible) and the
current stream.

Skipped with the reason unless a CUDA GPU is present and the extension was built with its
CUDA kernels.
"""
import itertools

import pytest
import torch

from fastgan_kernels import activations, testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops.block_sparse_linear import _reference_backward, block_sparse_linear

from conftest import cuda_kernel_marks  # noqa: E402

pytestmark = cuda_kernel_marks("bsr_linear_fwd")

IDENTITY, RELU, LEAKY, TANH, SIGMOID = range(5)
SLOPE = 0.2
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = [16, 32, 64, 128, 256]


def _ids(v):
    return str(v).replace("torch.", "")


def make(m, k, n, block, sparsity=0.5, dtype=torch.float32, mask=None):
    nbr, nbc = bsr.grid((n, k), block)
    if mask is None:
        mask = torch.rand(nbr, nbc) >= sparsity
        if sparsity >= 1.0:
            mask[:] = False
    w = ((torch.rand(n, k) * 2 - 1) / k ** 0.5).to(dtype)
    weight = bsr.BsrWeight.from_dense(w, block, mask).to("cuda")
    x = torch.randn(m, k, device="cuda").to(dtype)
    b = ((torch.rand(n, device="cuda") * 2 - 1) / k ** 0.5).to(dtype)
    return x, weight, b


def forward(x, w, b, act):
    return torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, w.row_ptr, w.col_idx, b, w.shape[0], act, SLOPE)


def backward(grad, y, x, w, act, need=(True, True, True)):
    t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
    y_arg = grad if act == IDENTITY else y  # the op layer passes grad_out for identity (y is never read)
    return torch.ops.fastgan_ext.bsr_linear_bwd(grad, y_arg, x, w.values, w.row_ptr, w.col_idx, *t_index, act,
                                                SLOPE, *need)


def check(x, w, b, act=LEAKY, need=(True, True, True), grad=None):
    """Forward and backward kernels against the dense fp32 references; returns (y, grads)."""
    n = w.shape[0]
    y = forward(x, w, b, act)
    assert y.shape == (x.shape[0], n) and y.dtype == x.dtype and y.is_contiguous()
    testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, act, SLOPE))
    if grad is None:  # scaled so that grad_values is of order 1
        grad = (torch.randn(x.shape[0], n, device="cuda") / max(x.shape[0], 1) ** 0.5).to(x.dtype)
    saved = None if act == IDENTITY else y
    if activations.saves_preactivation(act):  # gelu / gelu_tanh / silu: the backward reads z
        saved = forward(x, w, b, IDENTITY)
    got = backward(grad, y if saved is None else saved, x, w, act, need)
    want = _reference_backward(grad, saved, x, w.values, w.row_ptr, w.col_idx, act, SLOPE, *need)
    for name, g, r, needed in zip(("grad_x", "grad_values", "grad_bias"), got, want, need):
        if not needed:
            assert g is None, name
            continue
        assert g.shape == r.shape and g.dtype == r.dtype and g.is_contiguous(), name
        testing.assert_close(g, r, backward=True, msg=lambda s, name=name: f"{name}: {s}")
    return y, got


@pytest.mark.parametrize("m", [1, 17, 256])
@pytest.mark.parametrize("act", list(activations.NAMES))
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_dtype_activation_batch_grid(dtype, act, m):
    x, w, b = make(m, 77, 70, (32, 16), 0.5, dtype)
    check(x, w, b, int(activations.check_activation(act, SLOPE)))


@pytest.mark.parametrize("block", list(itertools.product(SIZES, SIZES)), ids=lambda b: f"{b[0]}x{b[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_block_pairs_with_ragged_shapes(dtype, block):
    bn, bk = block
    # N and K not multiples of the block: the last block row / column is padded with zeros.
    x, w, b = make(17, bk + bk // 2 + 5, bn + bn // 2 + 3, block, 0.3, dtype)
    check(x, w, b, TANH)


@pytest.mark.parametrize("m", [1, 17, 256])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_sparsity(dtype, sparsity, m):
    x, w, b = make(m, 150, 130, (16, 32), sparsity, dtype)
    y, (gx, gv, gb) = check(x, w, b, RELU)
    if sparsity == 1.0:  # no kept block anywhere: act(bias), zero grad_x, no block gradients
        assert w.nnz_blocks == 0 and gv.shape == (0, 16, 32)
        assert torch.equal(y, torch.relu(b).expand_as(y))
        assert torch.equal(gx, torch.zeros_like(gx))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_empty_block_rows_write_act_bias(dtype):
    mask = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    x, w, b = make(19, 40, 60, (16, 16), mask=mask, dtype=dtype)
    y, _ = check(x, w, b, SIGMOID)
    want = torch.sigmoid(b.float()).to(dtype)
    for r in (1, 3):  # block rows 1 and 3 (rows 48..59: the padded last block row)
        rows = slice(16 * r, min(16 * (r + 1), 60))
        testing.assert_close(y[:, rows], want[rows].expand(19, -1))
    y0, _ = check(x, w, None, SIGMOID, need=(True, True, False))
    assert torch.equal(y0[:, 16:32], torch.full_like(y0[:, 16:32], 0.5))


@pytest.mark.parametrize("layout", ["strided_cols", "transposed", "row_slice"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_non_contiguous_inputs(dtype, layout):
    m, k, n = 33, 72, 50
    _, w, b = make(m, k, n, (16, 32), 0.3, dtype)
    if layout == "strided_cols":
        x = torch.randn(m, 2 * k, device="cuda").to(dtype)[:, ::2]
        grad = (torch.randn(m, 3 * n, device="cuda") / 6).to(dtype)[:, ::3]
    elif layout == "transposed":
        x = torch.randn(k, m, device="cuda").to(dtype).t()
        grad = (torch.randn(n, m, device="cuda") / 6).to(dtype).t()
    else:
        x = torch.randn(m + 2, k + 8, device="cuda").to(dtype)[2:, 8:]
        grad = (torch.randn(m + 1, n + 8, device="cuda") / 6).to(dtype)[1:, 8:]
    assert not x.is_contiguous() and not grad.is_contiguous()
    b = (torch.randn(2 * n, device="cuda") / 10).to(dtype)[::2]  # strided bias too
    check(x, w, b, LEAKY, grad=grad)
    # a transposed saved output y reaches the prologue through its strides
    y = forward(x, w, b, TANH)
    y_t = y.t().contiguous().t()
    got = backward(grad, y_t, x, w, TANH)
    want = _reference_backward(grad, y, x, w.values, w.row_ptr, w.col_idx, TANH, SLOPE, True, True, True)
    for g, r in zip(got, want):
        testing.assert_close(g, r, backward=True)


@pytest.mark.parametrize("need", list(itertools.product([False, True], repeat=3)),
                         ids=lambda n: "".join("xvb"[i] if v else "-" for i, v in enumerate(n)))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=_ids)
def test_every_need_combination(dtype, need):
    x, w, b = make(10, 50, 40, (16, 16), 0.5, dtype)
    check(x, w, b, LEAKY, need=need)
    check(x, w, b, IDENTITY, need=need)  # identity: y is never read


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_long_batch_splits_the_sddmm_deterministically(dtype):
    # Few kept blocks and a long batch: the SDDMM splits the batch (fp32 partials, fixed-order sum).
    x, w, b = make(4096, 40, 36, (16, 16), 0.5, dtype)
    _, first = check(x, w, b, SIGMOID)
    grad = (torch.randn(4096, 36, device="cuda") / 64).to(dtype)
    y = forward(x, w, b, SIGMOID)
    a = backward(grad, y, x, w, SIGMOID)
    c = backward(grad, y, x, w, SIGMOID)
    for g1, g2 in zip(a, c):
        assert torch.equal(g1, g2)  # no atomics anywhere: bitwise reproducible


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_ids)
def test_large_problem(dtype):
    x, w, b = make(1024, 1024, 768, (64, 32), 0.9, dtype)
    check(x, w, b, LEAKY)


def test_empty_batch():
    x, w, b = make(0, 40, 33, (16, 16), 0.5)
    y = forward(x, w, b, LEAKY)
    assert y.shape == (0, 33)
    gx, gv, gb = backward(torch.zeros(0, 33, device="cuda"), y, x, w, LEAKY)
    assert gx.shape == (0, 40) and torch.equal(gv, torch.zeros_like(w.values))
    assert torch.equal(gb, torch.zeros(33, device="cuda"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=_ids)
def test_values_view_at_an_odd_offset(dtype):
    """A contiguous values view that is not 16-byte aligned (the cp.async loaders need alignment)."""
    x, w, b = make(17, 40, 33, (16, 16), 0.5, dtype)
    store = torch.empty(w.values.numel() + 1, device="cuda", dtype=dtype)
    values = store[1:].view(w.values.shape)
    values.copy_(w.values)
    assert values.is_contiguous() and values.data_ptr() % 16 != 0
    check(x, bsr.BsrWeight(values, w.row_ptr, w.col_idx, w.shape), b, TANH)


def test_indices_are_int32():
    # csrc/ops.cpp: indices are int32 for every backend; the kernel refuses others (reading int64 as
    # int32 would send grad_x to the wrong blocks); torch's int64 BSR converts on the way in.
    x, w, b = make(7, 40, 33, (16, 16), 0.5)
    with pytest.raises(RuntimeError, match="int32"):
        torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, w.row_ptr.long(), w.col_idx.long(), b, 33, LEAKY, SLOPE)
    check(x, bsr.BsrWeight.from_torch_bsr(w.to_torch_bsr(), w.shape), b, LEAKY)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_public_op_autograd(dtype):
    """fastgan::block_sparse_linear with backend='cuda_ext', through autograd, N-D input."""
    _, w, b = make(1, 64, 48, (16, 32), 0.5, dtype)
    x = torch.randn(3, 5, 64, device="cuda").to(dtype).requires_grad_()
    values = w.values.clone().requires_grad_()
    bias = b.clone().requires_grad_()
    wt = bsr.BsrWeight(values, w.row_ptr, w.col_idx, w.shape)
    y = block_sparse_linear(x, wt, bias, "leaky_relu", SLOPE, backend="cuda_ext")
    testing.assert_close(y, reference.fused_linear(x.detach(), w.to_dense(), b, LEAKY, SLOPE))
    grad = (torch.randn(y.shape, device="cuda") / 4).to(dtype)
    y.backward(grad)
    gx, gv, gb = _reference_backward(grad.reshape(-1, 48), y.detach().reshape(-1, 48), x.detach().reshape(-1, 64),
                                     w.values, w.row_ptr, w.col_idx, LEAKY, SLOPE, True, True, True)
    testing.assert_close(x.grad, gx.reshape(x.shape), backward=True)
    testing.assert_close(values.grad, gv, backward=True)
    testing.assert_close(bias.grad, gb, backward=True)


def test_current_stream():
    x, w, b = make(256, 64, 64, (16, 16), 0.5, torch.float16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = forward(x, w, b, RELU)
    side.synchronize()
    testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, RELU, SLOPE))

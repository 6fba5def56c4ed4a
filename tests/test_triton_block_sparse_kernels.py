"""The Triton block-sparse kernels themselves (fastgan_kernels/triton/block_sparse_linear.py).

test_block_sparse_op.py checks the op contract on every backend; this file covers the kernel
grid: every block-size pair (64 is cut into sub-tiles under the interpreter), ragged N/K,
M in {1, 17, 256}, sparsity 0..1 (empty block rows), strided inputs, fp16/bf16, every need_*
combination of the backward and the heavy-first program order. Without a GPU the kernels run
in Triton's interpreter (tests/conftest.py), so shapes are small.
"""
import itertools

import pytest
import torch

from fastgan_kernels import testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops.block_sparse_linear import _reference_backward

from conftest import DEVICE, backend_params

kernels = pytest.importorskip("fastgan_kernels.triton.block_sparse_linear")
pytestmark = [m for p in backend_params("bsr_linear_fwd", include=("triton",)) for m in p.marks]

IDENTITY, RELU, LEAKY, TANH, SIGMOID = range(5)


def make(m, k, n, block, sparsity=0.5, dtype=torch.float32, mask=None):
    nbr, nbc = bsr.grid((n, k), block)
    if mask is None:
        mask = torch.rand(nbr, nbc) >= sparsity
        if sparsity >= 1.0:
            mask[:] = False
    w = ((torch.rand(n, k) * 2 - 1) / k ** 0.5).to(dtype)
    weight = bsr.BsrWeight.from_dense(w, block, mask).to(DEVICE)
    x = torch.randn(m, k).to(dtype).to(DEVICE)
    b = ((torch.rand(n) * 2 - 1) / k ** 0.5).to(dtype).to(DEVICE)
    return x, weight, b


def run_backward(grad, y, x, w, act, need=(True, True, True)):
    t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
    return kernels.bsr_linear_backward(grad, y, x, w.values, w.row_ptr, w.col_idx, *t_index, act, 0.2, *need)


def check(x, w, b, act=LEAKY, need=(True, True, True), grad=None, check_fwd=True):
    """Forward and backward of the kernels against the dense fp32 reference."""
    n = w.shape[0]
    y = kernels.bsr_linear_forward(x, w.values, w.row_ptr, w.col_idx, b, n, act, 0.2)
    assert y.shape == (x.shape[0], n) and y.dtype == x.dtype and y.is_contiguous()
    if check_fwd:
        testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, act, 0.2))
    if grad is None:
        grad = torch.randn(x.shape[0], n, device=x.device).to(x.dtype)
    y_arg = None if act == IDENTITY else y
    got = run_backward(grad, y_arg, x, w, act, need)
    want = _reference_backward(grad, y_arg, x, w.values, w.row_ptr, w.col_idx, act, 0.2, *need)
    for name, g, r, needed in zip(("grad_x", "grad_values", "grad_bias"), got, want, need):
        if not needed:
            assert g is None, name
            continue
        assert g.shape == r.shape and g.dtype == r.dtype, name
        testing.assert_close(g, r, backward=True, msg=lambda s, name=name: f"{name}: {s}")
    return y, got


BLOCKS = [(16, 16), (16, 32), (32, 16), (32, 32), (16, 64), (64, 16), (32, 64), (64, 32), (64, 64)]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b[0]}x{b[1]}")
def test_block_pairs_with_ragged_shapes(block):
    # N and K not multiples of either block size: the last block row / column is padded.
    x, w, b = make(17, 2 * block[1] + 7, 2 * block[0] + 3, block, 0.3)
    check(x, w, b, LEAKY)


@pytest.mark.parametrize("block", [(128, 16), (16, 128)], ids=["128x16", "16x128"])
def test_large_blocks_are_sub_tiled(block):
    x, w, b = make(5, 150, 130, block, 0.0)
    check(x, w, b, TANH)


@pytest.mark.parametrize("m", [1, 17, 256])
def test_batch_sizes(m):
    x, w, b = make(m, 45, 37, (16, 32), 0.4)
    check(x, w, b, SIGMOID)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("block", [(16, 16), (32, 16)], ids=["16x16", "32x16"])
def test_sparsity(sparsity, block):
    x, w, b = make(9, 70, 90, block, sparsity)
    y, (gx, gv, gb) = check(x, w, b, RELU)
    if sparsity == 1.0:  # no kept block anywhere: act(bias), zero grad_x, no block gradients
        assert w.nnz_blocks == 0 and gv.shape == (0, *block)
        torch.testing.assert_close(y, torch.relu(b).expand_as(y))
        assert torch.equal(gx, torch.zeros_like(gx))


def test_empty_block_rows_without_bias_output_act_zero():
    mask = torch.tensor([[1, 0], [0, 0], [0, 1]], dtype=torch.bool)
    x, w, b = make(6, 20, 40, (16, 16), mask=mask)
    y, _ = check(x, w, None, SIGMOID, need=(True, True, False))
    torch.testing.assert_close(y[:, 16:32], torch.full_like(y[:, 16:32], 0.5))


@pytest.mark.parametrize("layout", ["strided_cols", "transposed"])
def test_non_contiguous_inputs(layout):
    m, k, n = 13, 40, 35
    _, w, b = make(m, k, n, (16, 16), 0.3)
    if layout == "strided_cols":
        x = torch.randn(m, 2 * k, device=DEVICE)[:, ::2]
        grad = torch.randn(m, 3 * n, device=DEVICE)[:, ::3]
    else:
        x = torch.randn(k, m, device=DEVICE).t()
        grad = torch.randn(n, m, device=DEVICE).t()
    assert not x.is_contiguous() and not grad.is_contiguous()
    b = torch.randn(2 * n, device=DEVICE)[::2] / 10  # strided bias too
    check(x, w, b, LEAKY, grad=grad)
    # a strided saved output y reaches the prologue through its strides as well
    y = kernels.bsr_linear_forward(x, w.values, w.row_ptr, w.col_idx, b, n, TANH, 0.2)
    y_t = y.t().contiguous().t()
    got = run_backward(grad, y_t, x, w, TANH)
    want = _reference_backward(grad, y, x, w.values, w.row_ptr, w.col_idx, TANH, 0.2, True, True, True)
    for g, r in zip(got, want):
        testing.assert_close(g, r, backward=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("block", [(16, 32), (64, 16)], ids=["16x32", "64x16"])
def test_half_precision(dtype, block):
    x, w, b = make(17, 70, 50, block, 0.5, dtype)
    _, grads = check(x, w, b, TANH)
    assert all(g.dtype == dtype for g in grads)


@pytest.mark.parametrize("need", list(itertools.product([False, True], repeat=3)),
                         ids=lambda n: "".join("xvb"[i] if v else "-" for i, v in enumerate(n)))
def test_every_need_combination(need):
    x, w, b = make(10, 50, 40, (16, 16), 0.5)
    check(x, w, b, LEAKY, need=need)
    # identity (no saved y) as well
    check(x, w, b, IDENTITY, need=need, check_fwd=False)


def test_empty_batch():
    x, w, b = make(0, 40, 33, (16, 16), 0.5)
    y = kernels.bsr_linear_forward(x, w.values, w.row_ptr, w.col_idx, b, 33, LEAKY, 0.2)
    assert y.shape == (0, 33)
    gx, gv, gb = run_backward(torch.zeros(0, 33, device=DEVICE), y, x, w, LEAKY)
    assert gx.shape == (0, 40) and torch.equal(gv, torch.zeros_like(w.values))
    assert torch.equal(gb, torch.zeros(33, device=DEVICE))


def test_int64_indices_are_refused_by_the_contract():
    # csrc/ops.cpp: indices are int32 for every backend; from_torch_bsr converts torch's int64.
    x, w, b = make(7, 40, 33, (16, 16), 0.5)
    with pytest.raises(TypeError, match="int32"):
        bsr.BsrWeight(w.values, w.row_ptr.long(), w.col_idx.long(), w.shape)
    w32 = bsr.BsrWeight.from_torch_bsr(w.to_torch_bsr(), w.shape)
    check(x, w32, b, LEAKY)


# --- balancing ------------------------------------------------------------------------------------

def skewed_mask():
    """8 block rows x 6 block columns: one dense row, one half row, single blocks, empty rows."""
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[5] = True
    mask[2, ::2] = True
    mask[0, 4] = mask[7, 1] = True
    return mask


def test_heavy_first_order():
    ptr = torch.tensor([0, 1, 1, 4, 4, 4, 10, 10, 11], dtype=torch.int32)
    order = kernels.heavy_first(ptr)
    assert order.dtype == torch.int32
    assert order.tolist() == [5, 2, 0, 7, 1, 3, 4, 6]  # by count, descending; ties keep row order
    mask = skewed_mask()
    _, w, _ = make(1, 90, 128, (16, 16), mask=mask)
    assert kernels.heavy_first(w.row_ptr).tolist() == [5, 2, 0, 7, 1, 3, 4, 6]
    t_ptr, _, _ = bsr.transpose_index(w.row_ptr, w.col_idx, 6)
    assert kernels.heavy_first(t_ptr).tolist() == [4, 0, 1, 2, 3, 5]  # column counts 2, 2, 2, 1, 3, 1


def test_skewed_pattern_matches_reference():
    x, w, b = make(33, 90, 128, (16, 16), mask=skewed_mask())
    check(x, w, b, LEAKY)


def test_programs_follow_the_order():
    # Launch the forward over a subset of block rows in a chosen order: exactly those rows are
    # written (each with its own blocks), the others keep the sentinel.
    x, w, b = make(20, 90, 128, (16, 16), mask=skewed_mask())
    out = torch.full((20, 128), float("nan"), device=DEVICE)
    order = torch.tensor([6, 5, 0], dtype=torch.int32, device=DEVICE)
    kernels._launch_dense(kernels._forward_kernel, x, None, w.values, (1, 16), b, out, w.row_ptr, w.col_idx, None,
                          order, 16, 16, epilogue=IDENTITY)
    want = reference.fused_linear(x, w.to_dense(), b, "identity", 0.2)
    for r in range(8):
        cols = slice(16 * r, 16 * r + 16)
        if r in (6, 5, 0):
            testing.assert_close(out[:, cols], want[:, cols])
        else:
            assert torch.isnan(out[:, cols]).all()


# --- argument checks ------------------------------------------------------------------------------

def test_bad_arguments_are_refused():
    x, w, b = make(4, 40, 33, (16, 16), 0.5)
    with pytest.raises(TypeError, match="share a float32"):
        kernels.bsr_linear_forward(x.double(), w.values, w.row_ptr, w.col_idx, b, 33, LEAKY, 0.2)
    with pytest.raises(ValueError, match="contiguous"):
        v = w.values.transpose(1, 2).contiguous().transpose(1, 2)
        kernels.bsr_linear_forward(x, v, w.row_ptr, w.col_idx, b, 33, LEAKY, 0.2)
    with pytest.raises(ValueError, match="row_ptr must have 5 entries"):
        kernels.bsr_linear_forward(x, w.values, w.row_ptr, w.col_idx, b, 60, LEAKY, 0.2)
    with pytest.raises(ValueError, match="activation code"):
        kernels.bsr_linear_forward(x, w.values, w.row_ptr, w.col_idx, b, 33, 9, 0.2)
    with pytest.raises(TypeError, match="grad_out must have x's dtype"):
        run_backward(torch.randn(4, 33, device=DEVICE).double(), None, x, w, IDENTITY)
    with pytest.raises(ValueError, match="saved output y"):
        run_backward(torch.randn(4, 33, device=DEVICE), None, x, w, TANH)


def test_gpu_config_pruning(monkeypatch):
    # What the GPU autotuner would try (fastgan_kernels/triton/_resources.py): BLOCK_M capped by M; fp32
    # (FMA) dots drop configs whose operand + accumulator tiles exceed the register budget (keeping the
    # cheapest when none fits); tensor-core accumulators are capped on sm_80, not for Hopper's forward.
    from fastgan_kernels.triton import _resources

    monkeypatch.setattr(kernels, "INTERPRET", False)
    gpu = kernels._configs([(128, 3, 8), (128, 4, 4), (64, 3, 4), (16, 3, 4)])
    f32, f16 = torch.empty(1), torch.empty(1, dtype=torch.float16)
    dense = dict(SUB_IN=64, SUB_OUT=128, PROLOGUE=0)
    keep = lambda cfgs: [(c.kwargs["BLOCK_M"], c.num_warps) for c in cfgs]  # noqa: E731
    with _resources.target_arch(90):
        assert keep(kernels._prune(gpu, {"M": 4096, "a_ptr": f32}, F32_DOT=True, **dense)) == [(16, 4)]
        assert keep(kernels._prune(gpu, {"M": 4096, "a_ptr": f16}, F32_DOT=False, **dense)) == [
            (128, 8), (128, 4), (64, 4), (16, 4)]
        capped = kernels._prune(gpu, {"M": 3, "a_ptr": f16}, F32_DOT=False, **dense)  # BLOCK_M 16, merged
        assert [(c.kwargs["BLOCK_M"], c.num_stages, c.num_warps) for c in capped] == [(16, 3, 8), (16, 4, 4), (16, 3, 4)]
        sddmm = dict(SUB_N=64, SUB_K=64, PROLOGUE=2)
        assert keep(kernels._prune(gpu, {"M": 4096, "x_ptr": f32}, F32_DOT=True, **sddmm)) == [(16, 4)]
    with _resources.target_arch(80):  # mma.sync: accumulators of at most 64 words per thread
        assert keep(kernels._prune(gpu, {"M": 4096, "a_ptr": f16}, F32_DOT=False, **dense)) == [
            (128, 8), (64, 4), (16, 4)]

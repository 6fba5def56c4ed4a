"""fastgan::block_sparse_linear on every backend that runs here, against the masked dense reference."""
import pytest
import torch
import torch.nn.functional as F

from fastgan_kernels import testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops.block_sparse_linear import block_sparse_linear

from conftest import backend_params

BACKENDS = backend_params("bsr_linear_fwd")
ACTS = {"identity": lambda t: t, "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
        "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def make(m, k, n, block, sparsity, dtype=torch.float32, device="cpu"):
    w = ((torch.rand(n, k, device=device) * 2 - 1) / k ** 0.5)
    nbr, nbc = bsr.grid((n, k), block)
    mask = torch.rand(nbr, nbc, device=device) >= sparsity
    if sparsity >= 1.0:
        mask[:] = False
    weight = bsr.BsrWeight.from_dense(w.to(dtype), block, mask)
    x = torch.randn(m, k, device=device).to(dtype)
    b = ((torch.rand(n, device=device) * 2 - 1) / k ** 0.5).to(dtype)
    return x, weight, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("block", [(16, 16), (32, 16), (16, 64)])
def test_forward_matches_masked_dense(backend, sparsity, block):
    name, device = backend
    for m, k, n in [(1, 40, 33), (17, 100, 50)]:
        x, w, b = make(m, k, n, block, sparsity, device=device)
        y = block_sparse_linear(x, w, b, "leaky_relu", 0.2, backend=name)
        testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, "leaky_relu", 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("act", list(ACTS))
def test_dtypes_and_activations(backend, dtype, act):
    name, device = backend
    x, w, b = make(17, 64, 48, (16, 32), 0.5, dtype, device)
    y = block_sparse_linear(x, w, b, act, 0.2, backend=name)
    assert y.dtype == dtype
    testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, act, 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ["leaky_relu", "tanh", "identity"])
def test_backward_grads_only_kept_blocks(backend, act):
    name, device = backend
    x, w, b = make(17, 70, 50, (16, 32), 0.5, device=device)
    x = x.reshape(17, 1, 70).requires_grad_()
    values = w.values.clone().requires_grad_()
    b = b.clone().requires_grad_()
    sparse_w = bsr.BsrWeight(values, w.row_ptr, w.col_idx, w.shape)
    grad = torch.randn(17, 1, 50, device=device)
    block_sparse_linear(x, sparse_w, b, act, 0.2, backend=name).backward(grad)

    dense = w.to_dense().clone().requires_grad_()
    x_ref, b_ref = x.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    ACTS[act](F.linear(x_ref, dense, b_ref)).backward(grad)
    testing.assert_close(x.grad, x_ref.grad, backward=True)
    testing.assert_close(b.grad, b_ref.grad, backward=True)
    kept = bsr.BsrWeight.from_dense(dense.grad, w.block, w.block_mask()).values
    testing.assert_close(values.grad, kept, backward=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    name, device = backend
    x, w, b = make(5, 40, 33, (16, 16), 0.5, device=device)
    x.requires_grad_()
    values = w.values.clone().requires_grad_()
    torch.library.opcheck(torch.ops.fastgan.block_sparse_linear.default,
                          (x, values, w.row_ptr, w.col_idx, b, 33, "tanh", 0.2, name))


def test_bsr_round_trips():
    w = torch.randn(50, 70)
    mask = torch.rand(4, 3) > 0.5
    weight = bsr.BsrWeight.from_dense(w, (16, 32), mask)
    torch.testing.assert_close(weight.to_dense(), w * bsr.expand_mask(mask, (50, 70), (16, 32)))
    again = bsr.BsrWeight.from_torch_bsr(weight.to_torch_bsr(), (50, 70))
    torch.testing.assert_close(again.to_dense(), weight.to_dense())
    assert torch.equal(weight.block_mask(), mask)
    dense = torch.zeros(64, 64)
    dense[16:32, 32:48] = 1.0
    assert bsr.BsrWeight.from_dense(dense, 16).nnz_blocks == 1


def test_transpose_index_walks_columns():
    mask = torch.tensor([[1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
    weight = bsr.BsrWeight.from_dense(torch.randn(48, 48), 16, mask)
    t_ptr, t_rows, t_block = bsr.transpose_index(weight.row_ptr, weight.col_idx, 3)
    for c in range(3):
        blocks = t_block[t_ptr[c]:t_ptr[c + 1]].long()
        assert (weight.col_idx[blocks] == c).all()
        assert t_rows[t_ptr[c]:t_ptr[c + 1]].tolist() == mask[:, c].nonzero().flatten().tolist()


@pytest.mark.parametrize("block", [8, 24, (16, 48), (512, 16), 0])
def test_bad_block_sizes_are_refused(block):
    with pytest.raises(ValueError, match="powers of two"):
        bsr.BsrWeight.from_dense(torch.randn(64, 64), block)
    with pytest.raises(ValueError, match="an int or a pair"):
        bsr.check_block("32")


def test_inconsistent_indices_are_refused():
    w = bsr.BsrWeight.from_dense(torch.randn(32, 32), 16)
    with pytest.raises(ValueError, match="row_ptr"):
        bsr.BsrWeight(w.values, torch.tensor([0, 3, 3], dtype=torch.int32), w.col_idx, (32, 32))
    with pytest.raises(ValueError, match="col_idx entries"):
        bsr.BsrWeight(w.values, w.row_ptr, torch.tensor([0, 1, 0, 2], dtype=torch.int32), (32, 32))
    with pytest.raises(ValueError, match="strictly increasing"):
        bsr.BsrWeight(w.values, w.row_ptr, torch.tensor([1, 0, 0, 1], dtype=torch.int32), (32, 32))
    with pytest.raises(ValueError, match="row_ptr must have"):
        bsr.BsrWeight(w.values, w.row_ptr[:2], w.col_idx, (32, 32))
    with pytest.raises(TypeError, match="row_ptr must be a 1-D int32"):
        bsr.BsrWeight(w.values, w.row_ptr.float(), w.col_idx, (32, 32))


def test_bad_inputs_are_refused():
    x, w, b = make(4, 40, 33, (16, 16), 0.5)
    with pytest.raises(ValueError, match="in_features = 40"):
        block_sparse_linear(torch.randn(4, 41), w, b)
    with pytest.raises(TypeError, match="values must have x's dtype"):
        block_sparse_linear(x.half(), w, b)
    assert block_sparse_linear(torch.randn(0, 40), w, b).shape == (0, 33)  # empty batch: empty output
    with pytest.raises(ValueError, match="bias must have shape"):
        block_sparse_linear(x, w, torch.randn(32))
    with pytest.raises(TypeError, match="BsrWeight"):
        block_sparse_linear(x, w.to_dense(), b)

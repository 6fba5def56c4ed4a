"""Property tests (Hypothesis): every op against its reference over drawn shapes and layouts.

The per-op files pin the edge cases by hand (M in {1, 17, 64, 1000}, odd K and N, each ISA
path); here Hypothesis draws the shapes, strides, activations, block sizes and sparsity
patterns, and shrinks any failure to the smallest case. Shapes stay small (at most a few
hundred) so the whole file runs in seconds; the backend is the automatic one for CPU tensors
(the C++ kernels where the extension is built, else the reference).
"""
import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastgan_kernels as fk  # noqa: E402
from fastgan_kernels import testing  # noqa: E402
from fastgan_kernels.ops import bsr, reference  # noqa: E402
from fastgan_kernels.ops import int8_linear as q8  # noqa: E402
from fastgan_kernels.ops.block_sparse_linear import block_sparse_linear  # noqa: E402

PROFILE = settings(max_examples=60, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "gelu_tanh", "silu", "elu"]
dims = st.integers(1, 300)
dtypes = st.sampled_from([torch.float32, torch.bfloat16, torch.float16])


def operand(rows: int, cols: int, dtype, transposed: bool, gen: torch.Generator) -> torch.Tensor:
    """A [rows, cols] tensor, contiguous or as the transposed view of a [cols, rows] one."""
    if transposed:
        return torch.randn(cols, rows, generator=gen).to(dtype).t()
    return torch.randn(rows, cols, generator=gen).to(dtype)


def activation_ref(z: torch.Tensor, act: str) -> torch.Tensor:
    # 0.2: the activation's parameter the tests pass (LeakyReLU's slope, ELU's alpha)
    return {"identity": lambda t: t, "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
            "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu,
            "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "silu": F.silu,
            "elu": lambda t: F.elu(t, 0.2)}[act](z)


@PROFILE
@given(m=dims, k=dims, n=dims, dtype=dtypes, act=st.sampled_from(ACTS), bias=st.booleans(),
       x_t=st.booleans(), w_t=st.booleans(), seed=st.integers(0, 2**16))
def test_fused_linear_forward(m, k, n, dtype, act, bias, x_t, w_t, seed):
    gen = torch.Generator().manual_seed(seed)
    x = operand(m, k, dtype, x_t, gen)
    w = (operand(n, k, torch.float32, w_t, gen) / k ** 0.5).to(dtype)
    b = torch.randn(n, generator=gen).to(dtype) if bias else None
    y = fk.fused_linear(x, w, b, act, 0.2)
    assert y.shape == (m, n) and y.dtype == dtype
    testing.assert_close(y, reference.fused_linear(x, w, b, act, 0.2))


@PROFILE
@given(m=st.integers(1, 120), k=st.integers(1, 120), n=st.integers(1, 120), act=st.sampled_from(ACTS),
       lead=st.sampled_from([(), (2,), (1, 3)]), seed=st.integers(0, 2**16))
def test_fused_linear_backward(m, k, n, act, lead, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, m, k, generator=gen)
    w = torch.randn(n, k, generator=gen) / k ** 0.5
    b = torch.randn(n, generator=gen)
    grad = torch.randn(*lead, m, n, generator=gen)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    refs = [t.clone().requires_grad_() for t in (x, w, b)]
    fk.fused_linear(*leaves, act, 0.2).backward(grad)
    activation_ref(F.linear(*refs), act).backward(grad)
    for got, want in zip(leaves, refs):
        testing.assert_close(got.grad, want.grad, backward=True)


@PROFILE
@given(m=st.integers(1, 100), k=st.integers(1, 200), n=st.integers(1, 200),
       block=st.tuples(st.sampled_from([16, 32, 64]), st.sampled_from([16, 32, 64])),
       density=st.floats(0.0, 1.0), act=st.sampled_from(ACTS), seed=st.integers(0, 2**16))
def test_block_sparse_forward_and_backward(m, k, n, block, density, act, seed):
    gen = torch.Generator().manual_seed(seed)
    nbr, nbc = bsr.grid((n, k), block)
    mask = torch.rand(nbr, nbc, generator=gen) < density
    w = torch.randn(n, k, generator=gen) / k ** 0.5
    weight = bsr.BsrWeight.from_dense(w, block, mask)
    x = torch.randn(m, k, generator=gen).requires_grad_()
    b = torch.randn(n, generator=gen).requires_grad_()
    values = weight.values.clone().requires_grad_()
    tracked = bsr.BsrWeight(values, weight.row_ptr, weight.col_idx, weight.shape)
    y = block_sparse_linear(x, tracked, b, act, 0.2)
    dense = weight.to_dense()
    testing.assert_close(y, reference.fused_linear(x.detach(), dense, b.detach(), act, 0.2))

    grad = torch.randn(m, n, generator=gen)
    y.backward(grad)
    xr, dr, br = (t.detach().clone().requires_grad_() for t in (x, dense, b))
    activation_ref(F.linear(xr, dr, br), act).backward(grad)
    testing.assert_close(x.grad, xr.grad, backward=True)
    testing.assert_close(b.grad, br.grad, backward=True)
    # Kept blocks get the dense gradient's blocks; pruned blocks have no values to update.
    kept_grad = bsr.BsrWeight(values.grad, weight.row_ptr, weight.col_idx, weight.shape).to_dense()
    testing.assert_close(kept_grad, dr.grad * bsr.expand_mask(mask, (n, k), block), backward=True)


@PROFILE
@given(m=dims, k=st.integers(1, 600), n=dims, x_t=st.booleans(), per_token=st.booleans(),
       seed=st.integers(0, 2**16))
def test_int8_accumulator_is_exact(m, k, n, x_t, per_token, seed):
    gen = torch.Generator().manual_seed(seed)
    xq = torch.randint(-128, 128, (k, m) if x_t else (m, k), generator=gen, dtype=torch.int8)
    xq = xq.t() if x_t else xq
    wq = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
    ones_x = torch.ones(m if per_token else 1)
    acc = q8.int8_linear(xq, ones_x, wq, torch.ones(n), out_dtype=torch.int32,
                         w_packed=q8.pack_weight(wq))
    assert torch.equal(acc.long(), xq.long() @ wq.long().t())


@PROFILE
@given(m=st.integers(1, 200), k=st.integers(1, 300), n=st.integers(1, 200), act=st.sampled_from(ACTS),
       out_dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=st.integers(0, 2**16))
def test_int8_dynamic_epilogue_matches_reference(m, k, n, act, out_dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=gen)
    wq, ws = q8.quantize_weight(torch.randn(n, k, generator=gen) / k ** 0.5)
    b = torch.randn(n, generator=gen)
    y = q8.int8_linear_dynamic(x, wq, ws, b, act, 0.2, out_dtype, w_packed=q8.pack_weight(wq))
    # The same quantised operands through the float reference of the epilogue.
    xq, xs = q8.quantize_per_token(x, backend="reference")
    want = activation_ref((xq.double() @ wq.double().t()) * xs.double()[:, None] * ws.double() + b.double(), act)
    testing.assert_close(y, want.to(out_dtype))

"""The AVX2 + FMA block-sparse linear path (csrc/cpu/bsr_avx2_f32.cpp over the shared driver
csrc/cpu/bsr/driver.h, 6 x 16 ymm tile csrc/cpu/bsr/tile_avx2.h) and the AVX2 bias-gradient
column sums (csrc/cpu/gemm_avx2_f32.cpp), against the PyTorch dense reference with the block
mask applied, and against the portable path (the ISA cap) on the same inputs.

The AVX2 path is what machines with AVX2 but no AVX-512 take by default; on an AVX-512
machine the cap `avx2` reaches it. The raw ops are called directly for the kernel checks,
the autograd op (fastgan_kernels.ops.block_sparse_linear) for the gradcheck-style one.
"""
from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

from fastgan_kernels import _ext, activations, testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops.block_sparse_linear import _reference_backward, block_sparse_linear
from fastgan_kernels.ops.fused_linear import fused_linear

pytestmark = [
    pytest.mark.skipif(not _ext.has_kernel("bsr_linear_fwd", "CPU"),
                       reason=_ext.REASON or "the extension has no CPU bsr_linear kernel"),
    pytest.mark.skipif(_ext.AVAILABLE and _ext.max_isa() < _ext.Isa.AVX2, reason="this CPU has no AVX2 + FMA"),
]

SLOPE = 0.2
ACTS = [int(a) for a in activations.Activation]  # identity .. elu, every code the kernels take
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# Every block size the op takes appears as bn and as bk; 16/32/64 pairs in full.
BLOCKS = [(bn, bk) for bn in (16, 32, 64) for bk in (16, 32, 64)] + [(128, 16), (16, 128), (256, 32), (32, 256)]
BATCHES = (1, 17, 1000)


def path(dtype: torch.dtype) -> str:
    return torch.ops.fastgan_ext.bsr_linear_cpu_path(dtype)


@contextlib.contextmanager
def avx2():
    """The AVX2 path (the default here; capped down to it on an AVX-512 machine)."""
    with _ext.cpu_isa("avx2"):
        yield


def make(m, k, n, block, sparsity=0.5, dtype=torch.float32, seed=0):
    """x, BsrWeight, bias scaled like nn.Linear (outputs of order 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.rand(n, k, generator=g) * 2 - 1) / k ** 0.5
    b = ((torch.rand(n, generator=g) * 2 - 1) / k ** 0.5).to(dtype)
    mask = torch.rand(*bsr.grid((n, k), block), generator=g) >= sparsity
    return x, bsr.BsrWeight.from_dense(w.to(dtype), block, mask), b


def fwd(x, w, b, act):
    return torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, w.row_ptr, w.col_idx, b, w.shape[0], act, SLOPE)


def bwd(g, y, x, w, act, needs=(True, True, True)):
    t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
    return torch.ops.fastgan_ext.bsr_linear_bwd(g, y if act else g, x, w.values, w.row_ptr, w.col_idx, *t_index,
                                                act, SLOPE, *needs)


def check_backward(g, y, x, w, act, xref=None):
    got = bwd(g, y, x, w, act)
    xr = x if xref is None else xref
    exp = _reference_backward(g, y if act else None, xr, w.values, w.row_ptr, w.col_idx, act, SLOPE, True, True, True)
    for name, a, e in zip(("grad_x", "grad_values", "grad_bias"), got, exp):
        assert a is not None and a.shape == e.shape and a.dtype == e.dtype, name
        testing.assert_close(a, e, backward=True, msg=lambda s, name=name: f"{name}: {s}")
    return got


def test_dispatch_takes_avx2_and_the_cap_reaches_portable():
    with avx2():
        for dt in DTYPES:
            assert path(dt) == "avx2_fp32", dt
    with _ext.cpu_isa("portable"):
        for dt in DTYPES:
            assert path(dt) == "portable", dt
    if _ext.max_isa() < _ext.Isa.AVX512:  # this machine's default is the AVX2 path itself
        assert path(torch.float32) == "avx2_fp32"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_forward_every_block_batch_and_activation(dtype):
    with avx2():
        for i, (block, m) in enumerate(itertools.product(BLOCKS, BATCHES)):
            if m == 1000 and i % 3:  # the large batch on a third of the blocks keeps this fast
                continue
            k, n = 37 + 31 * (i % 4), 45 + 29 * (i % 5)  # ragged against every block and the 16-column tile
            x, w, b = make(m, k, n, block, sparsity=(0.0, 0.5, 0.9)[i % 3], dtype=dtype, seed=i)
            act = ACTS[i % len(ACTS)]
            y = fwd(x, w, b if i % 2 == 0 else None, act)
            expected = reference.fused_linear(x, w.to_dense(), b if i % 2 == 0 else None, act, SLOPE)
            assert y.dtype == dtype and y.is_contiguous()
            testing.assert_close(y, expected, msg=lambda s: f"block {block} batch {m} act {act}: {s}")


@pytest.mark.parametrize("act", ACTS, ids=[activations.name(a) for a in ACTS])
def test_every_activation_forward_and_backward(act):
    with avx2():
        for m, block in zip(BATCHES, [(16, 32), (32, 16), (64, 64)]):
            x, w, b = make(m, 96, 80, block, 0.5, seed=act * 7 + m)
            y = fwd(x, w, b, act)
            testing.assert_close(y, reference.fused_linear(x, w.to_dense(), b, act, SLOPE))
            g = torch.randn(m, 80, generator=torch.Generator().manual_seed(m))
            check_backward(g, y, x, w, act)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_backward_every_block_and_batch(dtype):
    with avx2():
        for i, (block, m) in enumerate(itertools.product(BLOCKS, BATCHES)):
            if m == 1000 and i % 4:
                continue
            k, n = 50 + 23 * (i % 3), 41 + 37 * (i % 4)
            x, w, b = make(m, k, n, block, sparsity=(0.0, 0.5, 0.9)[i % 3], dtype=dtype, seed=i)
            act = ACTS[i % len(ACTS)]
            y = reference.fused_linear(x, w.to_dense(), b, act, SLOPE)
            g = torch.randn(m, n, generator=torch.Generator().manual_seed(i)).to(dtype)
            check_backward(g, y, x, w, act)


def test_non_contiguous_inputs():
    with avx2():
        _, w, b = make(17, 100, 67, (32, 16), 0.5, seed=3)
        x_big = torch.randn(2 * 17, 2 * 100, generator=torch.Generator().manual_seed(4))
        views = {"strided": x_big[::2, ::2], "transposed": x_big[:17, :100].t().contiguous().t()}
        for name, x in views.items():
            assert not x.is_contiguous(), name
            for act in (0, 2, 5):
                y = fwd(x, w, b, act)
                testing.assert_close(y, reference.fused_linear(x.contiguous(), w.to_dense(), b, act, SLOPE))
                g_big = torch.randn(17, 2 * 67, generator=torch.Generator().manual_seed(act))
                g = g_big[:, ::2]  # non-contiguous grad_out too
                check_backward(g, y, x, w, act, xref=x.contiguous())


@pytest.mark.parametrize("block", [(16, 16), (32, 64), (128, 32)], ids=str)
def test_matches_the_portable_path(block):
    for i, m in enumerate(BATCHES):
        x, w, b = make(m, 200, 150, block, 0.75, seed=i)
        g = torch.randn(m, 150, generator=torch.Generator().manual_seed(i))
        act = (1, 5, 8)[i]
        results = {}
        for cap in ("avx2", "portable"):
            with _ext.cpu_isa(cap):
                assert path(torch.float32) == ("avx2_fp32" if cap == "avx2" else "portable")
                y = fwd(x, w, b, act)
                results[cap] = (y, *bwd(g, y, x, w, act))
        for name, a, p in zip(("y", "grad_x", "grad_values", "grad_bias"), results["avx2"], results["portable"]):
            torch.testing.assert_close(a, p, atol=1e-4, rtol=1e-4, msg=lambda s, name=name: f"{name}: {s}")


def test_autograd_op_grads_match_masked_dense_autograd():
    """gradcheck-style: the op's grads (grad_x, grad of the kept values, grad_bias) against
    autograd through the dense weight with the block mask applied, in float64 arithmetic
    for the reference."""
    with avx2():
        for m, act_name in zip(BATCHES, ("gelu_tanh", "silu", "elu")):
            x, w, b = make(m, 90, 70, (16, 32), 0.6, seed=m)
            values = w.values.clone().requires_grad_()
            xs, bs = x.clone().requires_grad_(), b.clone().requires_grad_()
            weight = bsr.BsrWeight(values, w.row_ptr, w.col_idx, w.shape)
            y = block_sparse_linear(xs, weight, bs, act_name, backend="cpu_ext")
            g = torch.randn_like(y)
            y.backward(g)

            mask = bsr.expand_mask(_block_mask(w), w.shape, w.block).double()
            dense = w.to_dense().double().requires_grad_()
            xd, bd = x.double().requires_grad_(), b.double().requires_grad_()
            zd = xd @ (dense * mask).t() + bd
            yd = activations.apply(zd, act_name, activations.resolve_param(act_name))
            yd.backward(g.double())
            testing.assert_close(y, yd.float())
            testing.assert_close(xs.grad, xd.grad.float(), backward=True)
            testing.assert_close(bs.grad, bd.grad.float(), backward=True)
            # the values' grad is the dense grad read back at the kept blocks
            dense_grad = bsr.BsrWeight.from_dense((dense.grad * mask).float(), w.block, _block_mask(w))
            testing.assert_close(values.grad, dense_grad.values, backward=True)


def _block_mask(w: bsr.BsrWeight) -> torch.Tensor:
    nbr, nbc = bsr.grid(w.shape, w.block)
    mask = torch.zeros(nbr, nbc, dtype=torch.bool)
    rows = bsr.block_rows(w.row_ptr, w.nnz_blocks)
    mask[rows.long(), w.col_idx.long()] = True
    return mask


# ---- the AVX2 bias-gradient column sums (the fused layer's grad_bias) ----------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_fused_linear_bias_grad_avx2_column_sums(dtype):
    """grad_bias = sum over the batch of grad_out * act'(y): N ragged against the 8-lane
    vectors and the 64-column register block, every activation, non-contiguous grad_out."""
    for i, (m, n) in enumerate([(1, 7), (17, 67), (1000, 131), (33, 200)]):
        for act in ACTS:
            x = torch.randn(m, 24, generator=torch.Generator().manual_seed(i)).to(dtype)
            wt = (torch.randn(n, 24, generator=torch.Generator().manual_seed(i + 1)) / 5).to(dtype)
            b = torch.randn(n, generator=torch.Generator().manual_seed(i + 2)).to(dtype) / 5
            g_big = torch.randn(m, 2 * n, generator=torch.Generator().manual_seed(i + 3)).to(dtype)
            g = g_big[:, ::2] if i % 2 else g_big[:, :n]
            name = activations.name(act)
            grads = {}
            for cap in ("avx2", "portable"):
                with _ext.cpu_isa(cap):
                    bb = b.clone().requires_grad_()
                    y = fused_linear(x, wt, bb, name, backend="cpu_ext")
                    y.backward(g)
                    grads[cap] = bb.grad
            bd = b.double().requires_grad_()
            yd = activations.apply(x.double() @ wt.double().t() + bd, act, activations.resolve_param(name))
            yd.backward(g.double())
            testing.assert_close(grads["avx2"], bd.grad.to(dtype), backward=True,
                                 msg=lambda s: f"m {m} n {n} act {name}: {s}")
            torch.testing.assert_close(grads["avx2"].float(), grads["portable"].float(),
                                       **testing.tolerance(dtype, backward=True))

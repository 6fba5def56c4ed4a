"""gelu, gelu_tanh, silu and elu in the C++ CPU kernels, on every ISA path this machine reaches.

The scalar, AVX-512 and AVX2 versions of each activation (csrc/cpu/activation.h) run inside
the fused-linear epilogues (tiles, the small-batch and dot-product forward paths, bf16, the AMX
emulation), the block-sparse epilogue and the int8 epilogue; their derivatives run in the
gradient GEMMs' prologue and the bias-gradient column sums. Every case is checked against the
plain-PyTorch reference; the backward reads the pre-activation z for gelu / gelu_tanh / silu
and the output y for elu (fastgan_kernels.activations.saves_preactivation).
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from fastgan_kernels import _ext, activations, testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops import _int8_reference as q8

import test_cpu_fused_linear_kernels as fl  # noqa: E402  (the fused-linear ISA paths and helpers)

pytestmark = pytest.mark.skipif(not _ext.has_kernel("fused_linear_fwd", "CPU"),
                                reason=_ext.REASON or "the extension has no CPU fused_linear kernel")

A = activations.Activation
NEW = (A.GELU, A.GELU_TANH, A.SILU, A.ELU)
E = torch.ops.fastgan_ext if _ext.AVAILABLE else None


def saved_for_backward(x, w, b, act, param):
    """What the backward reads: z for gelu / gelu_tanh / silu, the output y otherwise."""
    if activations.saves_preactivation(act):
        return reference.fused_linear(x, w, b, A.IDENTITY, 0.0)
    return reference.fused_linear(x, w, b, act, param)


def exact_f64(z: torch.Tensor, act, alpha: float):
    """act(z) and act'(z) in float64 through autograd: the ground truth for the accuracy test."""
    z = z.double().requires_grad_()
    y = activations.apply(z, act, alpha)
    (d,) = torch.autograd.grad(y.sum(), z)
    return y.detach(), d


@pytest.mark.parametrize("path", list(fl.PATHS))
def test_accuracy_against_float64(path):
    """Forward and derivative of each new activation over z in [-12, 12] (dense near 0 and
    around the series switches at |z| = 0.5 and |z / sqrt 2| = 0.5), through an identity
    weight so that z is exactly the input. The measured maxima are in docs/design.md."""
    dtype = torch.bfloat16 if path.startswith("amx") or path == "avx512_bf16" else torch.float32
    with fl.on_path(path, dtype):
        z = torch.cat([torch.linspace(-12, 12, 2401), torch.linspace(-0.8, 0.8, 1601),
                       torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 0.5, -0.5, 0.7071, -0.7071])])
        z = z[: (z.numel() // 16) * 16].reshape(-1, 16).to(dtype)
        eye = torch.eye(16, dtype=dtype)
        for act, alpha in itertools.product(NEW, (1.0, 0.3)):
            if act != A.ELU and alpha != 1.0:
                continue
            y_true, d_true = exact_f64(z, act, alpha)
            y = E.fused_linear_fwd(z, eye, None, int(act), alpha)
            saved = z if activations.saves_preactivation(act) else y
            g = torch.ones_like(z)
            gx, _, _ = E.fused_linear_bwd(g, saved, z, eye, int(act), alpha, True, False, False)
            if dtype == torch.float32:
                d_ref = activations.grad_from_saved(g.double(), saved.double(), act, alpha)
                d_exp = d_ref if act == A.ELU else d_true  # elu's derivative comes from the rounded y
                err_y = (y.double() - y_true).abs() - 2e-6 * y_true.abs()
                err_d = (gx.double() - d_exp).abs() - 4e-6 * d_exp.abs()
                print(f"{path} {act.name}: max |y - y64| beyond 2e-6 rel {err_y.max().item():.2e}, "
                      f"max |d - d64| beyond 4e-6 rel {err_d.max().item():.2e}")
                # fp32 epilogue: a few ulps of the value, or a few 1e-7 absolute where the terms of
                # gelu / silu (or of their derivatives) cancel
                torch.testing.assert_close(y.double(), y_true, atol=3e-7, rtol=2e-6)
                torch.testing.assert_close(gx.double(), d_exp, atol=1.5e-6, rtol=4e-6)
            else:
                testing.assert_close(y, y_true.to(dtype))
                testing.assert_close(gx, d_true.to(dtype), backward=True)


@pytest.mark.parametrize("path", list(fl.PATHS))
def test_nan_propagates(path):
    dtype = torch.bfloat16 if path.startswith("amx") or path == "avx512_bf16" else torch.float32
    with fl.on_path(path, dtype):
        z = torch.randn(4, 16).to(dtype)
        z[2, 5] = float("nan")
        eye = torch.eye(16, dtype=dtype)
        for act in NEW:
            y = E.fused_linear_fwd(z, eye, None, int(act), 1.0)
            assert torch.isnan(y[2]).all(), f"{act.name} lost a NaN"
            assert torch.isfinite(y[:2]).all() and torch.isfinite(y[3:]).all()


# M in {1, 3, 17, 40, 64, 1000}: the dot-product (M or N <= 4), small-batch (33..64) and tiled paths.
SHAPES = [(1, 1, 1), (1, 1000, 3), (3, 33, 1000), (17, 33, 17), (40, 17, 100), (64, 100, 33), (1000, 33, 17)]
SMALL_SHAPES = [(1, 1, 1), (17, 33, 17), (3, 17, 100)]


@pytest.mark.parametrize("path,dtype", fl.PATH_DTYPES)
def test_fused_forward_and_backward(path, dtype):
    shapes = SMALL_SHAPES if path == "amx_bf16_emulated" else SHAPES
    with fl.on_path(path, dtype):
        for i, ((m, k, n), act) in enumerate(itertools.product(shapes, NEW)):
            alpha = 0.7 if act == A.ELU else 0.0
            x, w, b = fl.make(m, k, n, dtype, seed=i)
            b = b if i % 2 == 0 else None
            y = E.fused_linear_fwd(x, w, b, int(act), alpha)
            testing.assert_close(y, reference.fused_linear(x, w, b, act, alpha))
            if m * n > 20000:  # the backward of the large shapes is covered by the smaller ones
                continue
            saved = saved_for_backward(x, w, b, act, alpha)
            g = torch.randn(m, n, generator=torch.Generator().manual_seed(i)).to(dtype)
            got = E.fused_linear_bwd(g, saved, x, w, int(act), alpha, True, True, True)
            exp = reference.fused_linear_backward(g, saved, x, w, act, alpha, True, True, True)
            for name, a, e in zip(("grad_x", "grad_weight", "grad_bias"), got, exp):
                testing.assert_close(a, e, backward=True, msg=lambda s, name=name: f"{act.name} {name}: {s}")


@pytest.mark.parametrize("path,dtype", fl.PATH_DTYPES)
def test_non_contiguous_operands(path, dtype):
    with fl.on_path(path, dtype):
        x, w, b = fl.make(17, 33, 100, dtype)
        xs, ws = fl.strided(x, "sliced"), fl.strided(w, "transposed")
        for act in NEW:
            y = E.fused_linear_fwd(xs, ws, b, int(act), 1.0)
            testing.assert_close(y, reference.fused_linear(x, w, b, act, 1.0))
            saved = saved_for_backward(x, w, b, act, 1.0)
            g = torch.randn(17, 100).to(dtype)
            got = E.fused_linear_bwd(fl.strided(g, "transposed"), fl.strided(saved, "sliced"), xs, ws, int(act), 1.0,
                                     True, True, True)
            exp = reference.fused_linear_backward(g, saved, x, w, act, 1.0, True, True, True)
            for a, e in zip(got, exp):
                testing.assert_close(a, e, backward=True)


# ---- block-sparse -------------------------------------------------------------------------------

BSR_PATHS = {"portable": "portable", "avx512_fp32": "avx512"}


@pytest.mark.parametrize("path", list(BSR_PATHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_sparse_forward_and_backward(path, dtype):
    if path != "portable" and fl._max_isa() < _ext.Isa.AVX512:
        pytest.skip("this CPU has no AVX-512")
    g0 = torch.Generator().manual_seed(0)
    with _ext.cpu_isa(BSR_PATHS[path]):
        for i, ((m, k, n), act) in enumerate(itertools.product([(1, 37, 45), (17, 100, 67)], NEW)):
            x = torch.randn(m, k, generator=g0).to(dtype)
            dense = ((torch.rand(n, k, generator=g0) * 2 - 1) / math.sqrt(k)).to(dtype)
            mask = torch.rand(*bsr.grid((n, k), (16, 32)), generator=g0) >= 0.5
            w = bsr.BsrWeight.from_dense(dense, (16, 32), mask)
            b = ((torch.rand(n, generator=g0) * 2 - 1) / math.sqrt(k)).to(dtype)
            wd = w.to_dense()
            y = E.bsr_linear_fwd(x, w.values, w.row_ptr, w.col_idx, b, n, int(act), 0.5)
            testing.assert_close(y, reference.fused_linear(x, wd, b, act, 0.5))
            saved = saved_for_backward(x, wd, b, act, 0.5)
            g = torch.randn(m, n, generator=g0).to(dtype)
            t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
            gx, gv, gb = E.bsr_linear_bwd(g, saved, x, w.values, w.row_ptr, w.col_idx, *t_index, int(act), 0.5,
                                          True, True, True)
            rx, rw, rb = reference.fused_linear_backward(g, saved, x, wd, act, 0.5, True, True, True)
            testing.assert_close(gx, rx, backward=True)
            testing.assert_close(gb, rb, backward=True)
            # the kept blocks of the dense weight gradient
            testing.assert_close(bsr.to_dense(gv, w.row_ptr, w.col_idx, (n, k)),
                                 rw * bsr.expand_mask(mask, (n, k), (16, 32)).to(rw.dtype), backward=True)


def test_block_sparse_all_pruned_rows_write_act_of_bias():
    x = torch.randn(5, 64)
    w = bsr.BsrWeight.from_dense(torch.randn(32, 64), (16, 16), torch.zeros(2, 4, dtype=torch.bool))
    b = torch.randn(32)
    for act in NEW:
        y = E.bsr_linear_fwd(x, w.values, w.row_ptr, w.col_idx, b, 32, int(act), 1.0)
        testing.assert_close(y, activations.apply(b, act, 1.0).expand(5, 32))


# ---- int8 epilogue -------------------------------------------------------------------------------

INT8_PATHS = {"portable": ("portable", False), "avx512_vnni": ("avx512_vnni", False),
              "amx_int8_emulated": ("amx", True)}


@pytest.mark.parametrize("path", list(INT8_PATHS))
def test_int8_float_outputs(path):
    cap, emulate = INT8_PATHS[path]
    need = _ext.Isa.AVX512_VNNI if path == "avx512_vnni" else (_ext.Isa.AVX512 if emulate else 0)
    if fl._max_isa() < need:
        pytest.skip(f"this CPU cannot run the {path} path")
    m, k, n = 17, 65, 49
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    xs, ws, bias = torch.rand(m) * 0.02 + 0.001, torch.rand(n) * 0.02 + 0.001, torch.randn(n)
    blob = E.int8_pack_weight(wq)
    with _ext.cpu_isa(cap), _ext.amx_emulation(emulate):
        assert E.int8_linear_cpu_path() == path
        for act, out_dtype in itertools.product(NEW, (torch.float32, torch.bfloat16)):
            y = E.int8_linear_fwd(xq, xs, blob, ws, bias, n, int(act), 0.5, out_dtype, None)
            ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, act, 0.5, out_dtype, None)
            testing.assert_close(y, ref)


def test_unknown_codes_are_refused():
    x, w = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(RuntimeError, match="activation code must be in 0..8"):
        E.fused_linear_fwd(x, w, None, 9, 0.0)

"""gelu, gelu_tanh, silu and elu through the public API, on every backend.

* the activation table: names, aliases, the parameter (slope / alpha), the reference
  derivative against float64 autograd for every activation;
* fused_linear and block_sparse_linear, forward and backward, against eager PyTorch
  (F.linear + the activation) for each backend that runs here: the eager training paths
  (the C++ autograd node of the extension, the Python Function of Triton / the reference)
  keep z, the custom op (what torch.compile / export trace) recomputes it;
* the nn modules carry ELU's alpha and map back to nn.ELU / nn.GELU / nn.SiLU;
* double backward is refused.

Triton runs in its interpreter here (small shapes); cuda_ext is skipped without a GPU.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels import activations, testing
from fastgan_kernels.nn import FusedLinear
from fastgan_kernels.nn.fused_linear import activation_module
from fastgan_kernels.ops import bsr
from fastgan_kernels.ops.block_sparse_linear import block_sparse_linear

from conftest import backend_params  # noqa: E402

A = activations.Activation
NEW = ("gelu", "gelu_tanh", "silu", "elu")
EAGER = {  # the torch spelling of each new activation, alpha = 0.5 for elu
    "gelu": lambda z: F.gelu(z),
    "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    "silu": F.silu,
    "elu": lambda z: F.elu(z, 0.5),
}


# ---- the table ----------------------------------------------------------------------------------

def test_codes_names_and_aliases():
    assert [int(A.GELU), int(A.GELU_TANH), int(A.SILU), int(A.ELU)] == [5, 6, 7, 8]
    assert activations.NAMES[5:] == NEW
    for alias, act in [("gelu_new", A.GELU_TANH), ("swish", A.SILU), ("GELU", A.GELU), ("gelu_erf", A.GELU)]:
        assert activations.check_activation(alias) == act
    assert [activations.saves_preactivation(n) for n in activations.NAMES] == [False] * 5 + [True] * 3 + [False]
    with pytest.raises(ValueError, match="activation code must be in 0..8"):
        activations.check_activation(9)


def test_parameter_resolution():
    assert activations.resolve_param("elu") == 1.0  # nn.ELU's default
    assert activations.resolve_param("elu", alpha=0.3) == 0.3
    assert activations.resolve_param("elu", 0.3) == 0.3  # the one float the ops carry
    assert activations.resolve_param("leaky_relu") == 0.2
    with pytest.raises(ValueError, match="alpha is ELU's parameter"):
        activations.resolve_param("gelu", alpha=1.0)
    with pytest.raises(ValueError, match="alpha must be a finite float >= 0 for elu"):
        activations.resolve_param("elu", alpha=-1.0)
    with pytest.raises(ValueError, match="different negative_slope"):
        activations.resolve_param("elu", 0.2, alpha=1.0)
    assert activations.describe("elu", 0.5) == "elu(0.5)" and activations.describe("gelu", 0.2) == "gelu"


@pytest.mark.parametrize("act", list(activations.NAMES))
def test_reference_derivative_matches_autograd(act):
    z = torch.cat([torch.linspace(-8, 8, 801, dtype=torch.float64), torch.tensor([0.0, 1e-8, -1e-8],
                                                                                 dtype=torch.float64)])
    z = z.requires_grad_()
    y = activations.apply(z, act, 0.5)
    (d,) = torch.autograd.grad(y.sum(), z)
    saved = z.detach() if activations.saves_preactivation(act) else y.detach()
    got = activations.grad_from_saved(torch.ones_like(saved), saved, act, 0.5)
    mask = z.detach() != 0  # relu-like kinks: torch's subgradient at 0 is a convention
    torch.testing.assert_close(got[mask], d[mask], atol=1e-12, rtol=1e-10)


# ---- fused_linear on every backend --------------------------------------------------------------

def _eager(x, w, b, act):
    return EAGER[act](F.linear(x, w, b))


def _leaves(dtype, device, shape=(17, 24), n=20, contiguous=True):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g).to(dtype)
    if not contiguous:  # a transposed view
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    w = (torch.randn(n, shape[-1], generator=g) / shape[-1] ** 0.5).to(dtype)
    b = (torch.randn(n, generator=g) * 0.5).to(dtype)
    return [t.to(device).requires_grad_() for t in (x, w, b)]


def _check_against_eager(run, act, dtype, device, shape=(17, 24), contiguous=True):
    x, w, b = _leaves(dtype, device, shape, contiguous=contiguous)
    y = run(x, w, b)
    xe, we, be = [t.detach().float().requires_grad_() for t in (x, w, b)]
    ye = _eager(xe, we, be, act)
    testing.assert_close(y, ye.to(dtype))
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(dtype).to(device)
    y.backward(g)
    ye.backward(g.float())
    for name, got, exp in (("x", x.grad, xe.grad), ("weight", w.grad, we.grad), ("bias", b.grad, be.grad)):
        testing.assert_close(got, exp.to(dtype), backward=True, msg=lambda s, name=name: f"{act} grad {name}: {s}")


def _kw(act):
    return {"alpha": 0.5} if act == "elu" else {}


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd"))
@pytest.mark.parametrize("act", NEW)
def test_fused_linear_eager_training_path(backend, act):
    """The fast path with gradients: z kept by the forward (C++ node / Python Function)."""
    name, device = backend
    for dtype in (torch.float32, torch.bfloat16):
        _check_against_eager(lambda x, w, b: fk.fused_linear(x, w, b, act, backend=name, **_kw(act)), act, dtype,
                             device)


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd"))
@pytest.mark.parametrize("act", NEW)
def test_fused_linear_custom_op_recomputes_z(backend, act):
    """torch.ops.fastgan.fused_linear (the traced op): its backward recomputes z."""
    name, device = backend
    param = 0.5 if act == "elu" else 0.0
    _check_against_eager(lambda x, w, b: torch.ops.fastgan.fused_linear(x, w, b, act, param, name), act,
                         torch.float32, device, shape=(3, 5, 24))


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd", include=("reference", "cpu_ext")))
@pytest.mark.parametrize("shape", [(1, 24), (1000, 24), (2, 17, 24)], ids=str)
def test_fused_linear_odd_shapes_and_layouts(backend, shape):
    name, device = backend
    for act in NEW:
        _check_against_eager(lambda x, w, b: fk.fused_linear(x, w, b, act, backend=name, **_kw(act)), act,
                             torch.float32, device, shape=shape, contiguous=len(shape) == 2 and shape[0] > 1)


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd", include=("cpu_ext", "reference")))
def test_fused_linear_fp16(backend):
    name, device = backend
    for act in NEW:
        _check_against_eager(lambda x, w, b: fk.fused_linear(x, w, b, act, backend=name, **_kw(act)), act,
                             torch.float16, device)


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd", include=("reference", "cpu_ext", "triton")))
def test_double_backward_is_refused(backend):
    name, device = backend
    x, w, b = _leaves(torch.float32, device)
    y = fk.fused_linear(x, w, b, "gelu", backend=name)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


# ---- block_sparse_linear ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", backend_params("bsr_linear_fwd"))
@pytest.mark.parametrize("act", NEW)
def test_block_sparse_linear(backend, act):
    name, device = backend
    g = torch.Generator().manual_seed(0)
    dense = torch.randn(40, 48, generator=g) / 7
    mask = torch.rand(*bsr.grid((40, 48), (16, 16)), generator=g) >= 0.5
    weight = bsr.BsrWeight.from_dense(dense, (16, 16), mask).to(device)
    values = weight.values.clone().requires_grad_()
    wt = bsr.BsrWeight(values, weight.row_ptr, weight.col_idx, weight.shape)
    x = torch.randn(3, 48, generator=g).to(device).requires_grad_()
    y = block_sparse_linear(x, wt, None, act, backend=name, **_kw(act))
    xe = x.detach().clone().requires_grad_()
    we = weight.to_dense().clone().requires_grad_()
    ye = EAGER[act](F.linear(xe, we))
    testing.assert_close(y, ye)
    gr = torch.randn(y.shape, generator=g).to(device)
    y.backward(gr)
    ye.backward(gr)
    testing.assert_close(x.grad, xe.grad, backward=True)
    kept = bsr.to_dense(values.grad, weight.row_ptr, weight.col_idx, (40, 48))
    testing.assert_close(kept, we.grad * bsr.expand_mask(mask, (40, 48), (16, 16)).to(device), backward=True)


# ---- modules ------------------------------------------------------------------------------------

def test_modules_carry_elu_alpha_and_map_back():
    torch.manual_seed(0)
    layer = FusedLinear(8, 6, activation="elu", alpha=0.5, backend="reference")
    assert layer.alpha == 0.5 and "elu(0.5)" in repr(layer)
    assert FusedLinear(8, 6, activation="elu").alpha == 1.0
    lin, act = layer.to_linear()
    assert isinstance(act, nn.ELU) and act.alpha == 0.5
    x = torch.randn(4, 8)
    testing.assert_close(layer(x), act(lin(x)))
    for name, module in [("gelu", nn.GELU()), ("gelu_tanh", nn.GELU(approximate="tanh")), ("silu", nn.SiLU())]:
        got = activation_module(name)
        assert type(got) is type(module) and getattr(got, "approximate", None) == getattr(module, "approximate", None)
    same = FusedLinear.from_linear(lin, "elu", alpha=0.25)
    assert same.alpha == 0.25
    with pytest.raises(ValueError, match="alpha is ELU's parameter"):
        FusedLinear(8, 6, activation="gelu", alpha=1.0)
    bsl = fk.nn.BlockSparseLinear(32, 32, (16, 16), activation="elu", alpha=0.5)
    assert bsl.negative_slope == 0.5 and "elu(0.5)" in repr(bsl)
    q = fk.nn.Int8Linear.from_linear(nn.Linear(32, 16), "silu")
    ref = F.silu(F.linear(x.new_ones(2, 32), q.weight_int8.float() * q.weight_scale[:, None], q.bias))
    testing.assert_close(q(x.new_ones(2, 32)), ref, atol=0.05, rtol=0.05)


def test_compiled_training_recomputes_z_through_the_op():
    """torch.compile (fullgraph, aot_eager) traces the op and its backward, which recomputes z."""
    torch.manual_seed(0)
    layer = FusedLinear(24, 16, activation="gelu", backend="reference")
    lin, act = layer.to_linear()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x = torch.randn(5, 24)
    compiled(x).square().mean().backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    act(lin(x)).square().mean().backward()  # lin shares layer's parameters
    for got, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(got, p.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", backend_params("fused_linear_fwd", include=("reference", "cpu_ext", "triton")))
def test_nan_and_large_inputs(backend):
    """NaN stays NaN, |z| up to 100 stays finite (no overflow in exp / erf / tanh), like torch."""
    name, device = backend
    z = torch.tensor([[-100.0, -20.0, -1e-3, 0.0, 1e-3, 20.0, 100.0, 3.0],
                      [float("nan"), 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], device=device)
    eye = torch.eye(8, device=device)  # z @ eye.T = z; NaN * 0 makes the whole second row NaN
    for act in NEW:
        y = fk.fused_linear(z, eye, None, act, backend=name, **_kw(act))
        assert torch.isnan(y[1]).all(), f"{act} lost a NaN"
        testing.assert_close(y[0], EAGER[act](z[0]))

"""The fastgan::fused_linear op contract, on every backend that runs here.

Kernel-specific grids (every ISA path, tile edge cases) live in the per-backend test
files; this file checks what every backend owes the op: values against the reference,
N-D inputs, non-contiguous inputs, autograd, opcheck, compile and export, and errors.
"""
import pytest
import torch
import torch.nn.functional as F

import fastgan_kernels as fk
from fastgan_kernels import testing
from fastgan_kernels.ops import reference

from conftest import backend_params

BACKENDS = backend_params("fused_linear_fwd")
ACTS = ["identity", "relu", "leaky_relu", "tanh", "sigmoid"]


def make(m, k, n, dtype=torch.float32, device="cpu", bias=True):
    x = torch.randn(m, k, device=device).to(dtype)
    w = (torch.rand(n, k, device=device) * 2 - 1).div(k ** 0.5).to(dtype)
    b = (torch.rand(n, device=device) * 2 - 1).div(k ** 0.5).to(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("act", ACTS)
def test_forward_matches_reference(backend, dtype, act):
    name, device = backend
    for m, k, n in [(1, 3, 5), (17, 33, 17), (64, 64, 48)]:
        x, w, b = make(m, k, n, dtype, device, bias=(m != 17))
        y = fk.fused_linear(x, w, b, act, 0.2, backend=name)
        assert y.dtype == dtype and y.shape == (m, n)
        testing.assert_close(y, reference.fused_linear(x, w, b, act, 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_odd_batch(backend):
    name, device = backend
    x, w, b = make(1000, 37, 29, device=device)
    testing.assert_close(fk.fused_linear(x, w, b, backend=name), reference.fused_linear(x, w, b, "leaky_relu", 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nd_and_non_contiguous_inputs(backend):
    name, device = backend
    x = torch.randn(2, 19, 5, device=device)[:, ::2, :]          # 3-D, strided batch
    x = torch.randn(2, 10, 40, device=device)[..., ::2]           # non-contiguous last dim, K = 20
    w = torch.randn(20, 24, device=device).t()                    # weight [24, 20] as a transposed view
    b = torch.randn(48, device=device)[::2]
    y = fk.fused_linear(x, w, b, "tanh", backend=name)
    assert y.shape == (2, 10, 24)
    testing.assert_close(y, reference.fused_linear(x, w, b, "tanh", 0.2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ACTS)
def test_backward_matches_autograd(backend, act):
    name, device = backend
    x, w, b = make(17, 23, 11, device=device)
    x = x.reshape(1, 17, 23)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    refs = [t.clone().requires_grad_() for t in (x, w, b)]
    grad = torch.randn(1, 17, 11, device=device)
    fk.fused_linear(*leaves, act, 0.2, backend=name).backward(grad)
    z = F.linear(*refs)
    {"identity": lambda t: t, "relu": F.relu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "tanh": torch.tanh,
     "sigmoid": torch.sigmoid}[act](z).backward(grad)
    for got, want in zip(leaves, refs):
        testing.assert_close(got.grad, want.grad, backward=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_partial_requires_grad(backend):
    name, device = backend
    x, w, b = make(5, 7, 3, device=device)
    w.requires_grad_()
    fk.fused_linear(x, w, b, backend=name).sum().backward()
    want = torch.where(F.linear(x, w.detach(), b) > 0, 1.0, 0.2).t() @ x
    testing.assert_close(w.grad, want, backward=True)
    assert b.grad is None and x.grad is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    name, device = backend
    x, w, b = make(9, 12, 6, device=device)
    for args in [(x, w, b, "leaky_relu", 0.2, name), (x.requires_grad_(), w.requires_grad_(), None, "sigmoid", 0.0, name)]:
        torch.library.opcheck(torch.ops.fastgan.fused_linear.default, args)


def test_nan_propagates():
    x, w, b = make(4, 8, 3)
    x[2, 5] = float("nan")
    y = fk.fused_linear(x, w, b)
    assert torch.isnan(y[2]).all() and not torch.isnan(y[[0, 1, 3]]).any()


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 6)), ValueError, "in_features"),
    (dict(x=torch.randn(3, 5).double(), weight=torch.randn(4, 5).double()), TypeError, "x must be float32"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 5).half()), TypeError, "weight must have x's dtype"),
    (dict(x=torch.randint(0, 3, (3, 5)), weight=torch.randn(4, 5)), TypeError, "x must be float32"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 5), bias=torch.randn(5)), ValueError, "bias must have shape"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 5), activation="softplus"), ValueError, "activation must be one of"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 5), negative_slope=-0.1), ValueError, "negative_slope"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(4, 5), backend="cudnn"), ValueError, "backend must be one of"),
    (dict(x=torch.randn(3, 5), weight=torch.randn(20)), ValueError, "weight must be 2-D"),
])
def test_bad_input_is_refused_with_a_clear_error(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        fk.fused_linear(**kwargs)


def test_device_mismatch_is_refused():
    w = torch.randn(4, 5, device="meta")
    with pytest.raises(ValueError, match="weight must be on x's device"):
        fk.fused_linear(torch.randn(3, 5), w)


def test_forced_backend_that_cannot_run_says_why():
    with pytest.raises(RuntimeError, match="cuda_ext"):
        fk.fused_linear(torch.randn(3, 5), torch.randn(4, 5), backend="cuda_ext")


def test_autocast_casts_like_f_linear():
    x, w, b = make(5, 16, 8)
    w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fk.fused_linear(x, w, b, "tanh")                      # fp32 in, bf16 out, as F.linear
        y2 = fk.fused_linear(x.bfloat16(), w, b, "tanh")           # a bf16 activation from an upstream Linear
        ref = torch.tanh(F.linear(x, w, b))
    assert y.dtype == y2.dtype == ref.dtype == torch.bfloat16
    testing.assert_close(y, ref)
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32


def test_eager_fast_path_skips_the_op_only_when_nothing_needs_it(monkeypatch):
    import importlib

    module = importlib.import_module("fastgan_kernels.ops.fused_linear")  # the package re-exports the function

    x, w, b = make(4, 8, 3)
    expected = fk.fused_linear(x, w, b)

    def op_called(*args):
        raise AssertionError("custom op used")

    monkeypatch.setattr(module, "_fused_linear_op", op_called)
    with torch.no_grad():
        torch.testing.assert_close(fk.fused_linear(x, w, b), expected)   # no grad: direct kernel call
    torch.testing.assert_close(fk.fused_linear(x, w, b), expected)       # nothing requires grad
    w.requires_grad_()
    fk.fused_linear(x, w, b).sum().backward()                            # eager autograd: the same kernels
    grad = w.grad.clone()
    monkeypatch.undo()
    w.grad = None
    torch.ops.fastgan.fused_linear(x, w, b, "leaky_relu", 0.2, "auto").sum().backward()   # the op's formula
    torch.testing.assert_close(w.grad, grad)
    monkeypatch.setattr(module, "_fused_linear_op", op_called)
    with pytest.raises(Exception, match="custom op used"):
        torch.compile(lambda: fk.fused_linear(x, w, b), backend="eager", fullgraph=True)()  # tracing needs the op


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ["identity", "tanh"])
def test_eager_training_node(backend, act):
    # Eager training: the extension backends record one C++ autograd node (no Python in the
    # backward), the others a Python Function; both give the op's gradients, N-D input, no bias.
    name, device = backend
    x, w, _ = make(12, 9, 7, device=device, bias=False)
    x = x.reshape(3, 4, 9).requires_grad_()
    w.requires_grad_()
    y = fk.fused_linear(x, w, None, act, backend=name)
    node = y.grad_fn.name()
    assert ("FusedLinearFunction" in node) == (name in ("cpu_ext", "cuda_ext")), node
    grad = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), grad)
    z = F.linear(x.detach().requires_grad_(), w.detach().requires_grad_())
    want = torch.autograd.grad(torch.tanh(z) if act == "tanh" else z, z, grad)[0]
    testing.assert_close(gx, want @ w.detach(), backward=True)
    testing.assert_close(gw, want.reshape(-1, 7).t() @ x.detach().reshape(-1, 9), backward=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_is_refused_in_eager(backend):
    name, device = backend
    x, w, b = make(4, 6, 5, device=device)
    x.requires_grad_()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(fk.fused_linear(x, w, b, "tanh", backend=name).sum(), x, create_graph=True)

"""Drop-in edge cases, as nn.Linear behaves: empty batch, 1-D and N-D inputs, bias=False, dtype/device errors."""
import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.nn import BlockSparseLinear, FusedLinear, Int8Linear
from fastgan_kernels.ops import bsr
from fastgan_kernels.ops import int8_linear as q8
from fastgan_kernels.ops.block_sparse_linear import block_sparse_linear

from conftest import backend_params


def _linear(bias=True):
    torch.manual_seed(0)
    return nn.Linear(40, 33, bias=bias)


def _modules(bias=True):
    """(name, module, reference nn.Linear + LeakyReLU, float?) for every drop-in module."""
    lin = _linear(bias)
    act = nn.LeakyReLU(0.2)
    ref = nn.Sequential(lin, act)
    full = torch.ones(bsr.grid((33, 40), (16, 16)), dtype=torch.bool)
    masked = BlockSparseLinear.from_dense(lin, (16, 16), block_mask=full, activation="leaky_relu",
                                          negative_slope=0.2, mode="masked")
    bsr_mode = BlockSparseLinear.from_dense(lin, (16, 16), block_mask=full, activation="leaky_relu",
                                            negative_slope=0.2, mode="masked")
    bsr_mode.to_bsr()
    return [("FusedLinear", FusedLinear.from_linear(lin, "leaky_relu", 0.2), ref, True),
            ("BlockSparseLinear-masked", masked, ref, True),
            ("BlockSparseLinear-bsr", bsr_mode, ref, True),
            ("Int8Linear-dynamic", Int8Linear.from_linear(lin, "leaky_relu", 0.2), ref, False),
            ("Int8Linear-static", Int8Linear.from_linear(lin, "leaky_relu", 0.2, "static", 0.05), ref, False)]


MODULE_NAMES = [m[0] for m in _modules()]


def _get(name, bias=True):
    return next(m for m in _modules(bias) if m[0] == name)


@pytest.mark.parametrize("name", MODULE_NAMES)
@pytest.mark.parametrize("bias", [True, False])
def test_empty_batch_gives_an_empty_output_and_gradients_like_nn_linear(name, bias):
    _, module, ref, is_float = _get(name, bias)
    x = torch.randn(0, 40, requires_grad=is_float)
    out = module(x)
    assert out.shape == (0, 33) and out.dtype == torch.float32
    assert module(torch.randn(2, 0, 40)).shape == (2, 0, 33)
    if not is_float:
        return
    out.sum().backward()
    ref_x = torch.randn(0, 40, requires_grad=True)
    ref[0].zero_grad()
    ref(ref_x).sum().backward()
    assert x.grad.shape == (0, 40)
    params = dict(module.named_parameters())
    for pname, p in ref[0].named_parameters():
        mine = params["values" if pname == "weight" and "values" in params else pname]
        assert mine.grad is not None and not mine.grad.any() and not p.grad.any()


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_one_d_and_n_d_inputs(name):
    _, module, ref, is_float = _get(name)
    tol = dict(atol=1e-5, rtol=1e-5) if is_float else dict(atol=0.1, rtol=0.05)
    x1 = torch.randn(40)
    assert module(x1).shape == (33,)
    torch.testing.assert_close(module(x1), ref(x1), **tol)
    x3 = torch.randn(2, 3, 40)
    assert module(x3).shape == (2, 3, 33)
    torch.testing.assert_close(module(x3), ref(x3), **tol)


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_dtype_and_device_errors_read_like_nn_linear(name):
    _, module, ref, _ = _get(name)
    with pytest.raises(RuntimeError):  # nn.Linear raises a RuntimeError: drop-in code catches the same
        ref(torch.randn(3, 40, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="dtype|float32"):
        module(torch.randn(3, 40, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="device"):
        module(torch.randn(3, 40, device="meta"))


@pytest.mark.parametrize("backend_device", backend_params("fused_linear_fwd", include=("reference", "cpu_ext",
                                                                                         "triton")))
def test_ops_empty_batch_on_every_backend(backend_device):
    backend, device = backend_device
    w = torch.randn(33, 40, device=device, requires_grad=True)
    b = torch.randn(33, device=device, requires_grad=True)
    x = torch.randn(0, 40, device=device, requires_grad=True)
    y = fk.fused_linear(x, w, b, "tanh", backend=backend)
    assert y.shape == (0, 33)
    y.sum().backward()
    assert x.grad.shape == (0, 40) and not w.grad.any() and not b.grad.any()
    weight = bsr.BsrWeight.from_dense(w.detach(), (16, 16)) if hasattr(bsr.BsrWeight, "from_dense") else None
    if weight is not None:
        assert block_sparse_linear(x.detach(), weight, b.detach(), backend=backend).shape == (0, 33)
    wq, ws = q8.quantize_weight(w.detach().cpu())
    xq, xs = q8.quantize_per_token(torch.randn(0, 40))
    assert xq.shape == (0, 40) and xs.shape == (0,)
    assert q8.int8_linear(xq, xs, wq, ws).shape == (0, 33)
    assert q8.int8_linear_dynamic(torch.randn(0, 40), wq, ws, out_dtype=torch.int8,
                                  out_scale=torch.tensor([0.1])).dtype == torch.int8


def test_fused_training_model_with_an_empty_batch():
    g = fk.fuse(nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 4), nn.Tanh())).train()
    out = g(torch.randn(0, 8))
    assert out.shape == (0, 4)
    out.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in g.parameters())

"""The int8 ops on every backend that runs here: exact int32, epilogue vs the float reference, errors."""
import pytest
import torch

from fastgan_kernels import activations, testing
from fastgan_kernels.ops import int8_linear as q8

from conftest import backend_params

BACKENDS = backend_params("int8_linear_fwd")
QUANT_BACKENDS = backend_params("quantize_per_token")


def make(m, k, n, device="cpu"):
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device)
    xs = torch.rand(m, device=device) * 0.02 + 0.001
    ws = torch.rand(n, device=device) * 0.02 + 0.001
    bias = torch.randn(n, device=device)
    return xq, xs, wq, ws, bias


def packed(wq, name):
    return q8.pack_weight(wq, name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (17, 33, 19), (64, 100, 48), (256, 257, 65)])
def test_int32_accumulator_is_exact(backend, m, k, n):
    name, device = backend
    xq, xs, wq, ws, _ = make(m, k, n, device)
    acc = q8.int8_linear(xq, xs, wq, ws, out_dtype=torch.int32, w_packed=packed(wq, name), backend=name)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.cpu().long(), xq.cpu().long() @ wq.cpu().long().t())


def test_extreme_values_accumulate_exactly():
    k = 4096
    xq = torch.full((2, k), -127, dtype=torch.int8)
    wq = torch.full((3, k), -127, dtype=torch.int8)
    for name, device in [p.values[0] for p in BACKENDS if not p.marks]:
        acc = q8.int8_linear(xq.to(device), torch.ones(2, device=device), wq.to(device), torch.ones(3, device=device),
                             out_dtype=torch.int32, w_packed=packed(wq.to(device), name), backend=name)
        assert (acc.cpu() == 127 * 127 * k).all(), name


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", activations.NAMES)
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_epilogue_matches_float_reference(backend, act, out_dtype):
    name, device = backend
    xq, xs, wq, ws, bias = make(17, 65, 33, device)
    for x_scale, b in [(xs, bias), (xs[:1], None)]:
        y = q8.int8_linear(xq, x_scale, wq, ws, b, act, 0.2, out_dtype, w_packed=packed(wq, name), backend=name)
        ref = q8.reference_int8_linear(xq, x_scale, wq, ws, b, act, 0.2, out_dtype, None)
        assert y.dtype == out_dtype
        testing.assert_close(y, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_output_requantises(backend):
    name, device = backend
    xq, xs, wq, ws, bias = make(17, 64, 40, device)
    out_scale = torch.tensor([0.05], device=device)
    y = q8.int8_linear(xq, xs, wq, ws, bias, "leaky_relu", 0.2, torch.int8, out_scale, packed(wq, name), name)
    ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, "leaky_relu", 0.2, torch.int8, out_scale)
    assert y.dtype == torch.int8
    assert (y.int() - ref.int()).abs().max() <= 1  # a rounding tie may land either way
    assert (y == ref).float().mean() > 0.99


@pytest.mark.parametrize("backend", QUANT_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_per_token(backend, dtype):
    name, device = backend
    x = (torch.randn(17, 70, device=device) * 3).to(dtype)
    x[5] = 0.0
    x = x[:, ::2]  # non-contiguous
    q, s = q8.quantize_per_token(x, name)
    rq, rs = q8.reference_quantize_per_token(x)
    torch.testing.assert_close(s, rs)
    assert (q.int() - rq.int()).abs().max() <= 1 and (q == rq).float().mean() > 0.99
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert (q[5] == 0).all() and s[5] == pytest.approx(1 / 127)


@pytest.mark.parametrize("backend", QUANT_BACKENDS)
def test_quantize_per_tensor(backend):
    name, device = backend
    x = torch.randn(9, 31, device=device) * 4
    scale = torch.tensor([0.02], device=device)
    q = q8.quantize_per_tensor(x, scale, name)
    ref = q8.reference_quantize_per_tensor(x, scale)
    assert (q.int() - ref.int()).abs().max() <= 1 and (q == ref).float().mean() > 0.99
    assert q.min() == -127 and q.max() == 127  # saturates


@pytest.mark.parametrize("backend", QUANT_BACKENDS)
def test_nan_is_refused_not_lost(backend):
    name, device = backend
    x = torch.randn(4, 8, device=device)
    x[2, 3] = float("nan")
    with pytest.raises((ValueError, RuntimeError), match="NaN"):
        q8.quantize_per_token(x, name)
    with pytest.raises((ValueError, RuntimeError), match="NaN"):
        q8.quantize_per_tensor(x, torch.tensor([0.1], device=device), name)


def test_bad_input_is_refused():
    xq, xs, wq, ws, bias = make(4, 16, 8)
    with pytest.raises(TypeError, match="wq must be int8"):
        q8.int8_linear(xq, xs, wq.float(), ws)
    with pytest.raises(TypeError, match="xq must be int8"):
        q8.int8_linear(xq.float(), xs, wq, ws)
    with pytest.raises(TypeError, match="x_scale is required"):
        q8.int8_linear(xq, None, wq, ws)
    with pytest.raises(TypeError, match="w_scale is required"):
        q8.int8_linear(xq, xs, wq, None)
    with pytest.raises(ValueError, match="w_scale must have shape"):
        q8.int8_linear(xq, xs, wq, ws[:3])
    with pytest.raises(TypeError, match="x_scale must be float32"):
        q8.int8_linear(xq, xs.double(), wq, ws)
    with pytest.raises(TypeError, match="out_scale is required"):
        q8.int8_linear(xq, xs, wq, ws, out_dtype=torch.int8)
    with pytest.raises(ValueError, match="raw accumulator"):
        q8.int8_linear(xq, xs, wq, ws, bias, out_dtype=torch.int32)
    with pytest.raises(ValueError, match="in_features = 16"):
        q8.int8_linear(xq[:, :8], xs, wq, ws)
    assert q8.int8_linear(xq[:0], xs[:0], wq, ws).shape == (0, wq.shape[0])  # empty batch: empty output


def test_k_too_large_for_int32_is_refused():
    k = q8.MAX_K + 1
    assert 127 * 127 * k >= 2 ** 31 and 127 * 127 * q8.MAX_K < 2 ** 31
    xq = torch.zeros(1, k, dtype=torch.int8)
    wq = torch.zeros(1, k, dtype=torch.int8)
    with pytest.raises(ValueError, match="too large for int32 accumulation"):
        q8.int8_linear(xq, torch.ones(1), wq, torch.ones(1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    name, device = backend
    xq, xs, wq, ws, bias = make(9, 20, 12, device)
    torch.library.opcheck(torch.ops.fastgan.int8_linear.default,
                          (xq, xs, wq, ws, bias, packed(wq, name), "tanh", 0.2, torch.float32, None, name))
    torch.library.opcheck(torch.ops.fastgan.quantize_per_token.default, (torch.randn(5, 7, device=device), name))
    x = torch.randn(9, 40, device=device)[:, ::2]
    for args in [(bias, "tanh", 0.2, torch.float32, None), (None, "leaky_relu", 0.1, torch.int8, xs[:1])]:
        torch.library.opcheck(torch.ops.fastgan.int8_linear_dynamic.default,
                              (x, wq, ws, args[0], packed(wq, name), *args[1:], name))


# ---- int8_linear_dynamic: quantize_per_token + int8_linear in one call ---------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dynamic_equals_quantize_then_int8_linear(backend, dtype):
    name, device = backend
    _, _, wq, ws, bias = make(1, 65, 33, device)
    w_packed = packed(wq, name)
    x2 = (torch.randn(17, 130, device=device) * 3).to(dtype)[:, ::2]  # non-contiguous
    x3 = (torch.randn(2, 5, 65, device=device) * 3).to(dtype)
    for x in (x2, x3):
        xq, xs = q8.quantize_per_token(x, name)
        for out_dtype, out_scale, act in [(dtype, None, "leaky_relu"), (torch.int8, torch.tensor([0.05], device=device),
                                                                          "relu"), (torch.int32, None, "identity")]:
            b = None if out_dtype == torch.int32 else bias
            y = q8.int8_linear_dynamic(x, wq, ws, b, act, 0.2, out_dtype, out_scale, w_packed, name)
            ref = q8.int8_linear(xq, xs.reshape(-1), wq, ws, b, act, 0.2, out_dtype, out_scale, w_packed, name)
            assert y.shape == (*x.shape[:-1], 33) and y.dtype == out_dtype
            assert torch.equal(y, ref.reshape(y.shape)), (x.dim(), out_dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dynamic_refuses_nan(backend):
    name, device = backend
    _, _, wq, ws, _ = make(1, 8, 4, device)
    x = torch.randn(4, 8, device=device)
    x[2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        q8.int8_linear_dynamic(x, wq, ws, backend=name)


def test_dynamic_bad_input_is_refused():
    _, _, wq, ws, bias = make(4, 16, 8)
    x = torch.randn(4, 16)
    with pytest.raises(TypeError, match="x must be float32"):
        q8.int8_linear_dynamic(x.to(torch.int8), wq, ws)
    with pytest.raises(TypeError, match="wq must be int8"):
        q8.int8_linear_dynamic(x, wq.float(), ws)
    with pytest.raises(ValueError, match="in_features = 16"):
        q8.int8_linear_dynamic(x[:, :8], wq, ws)
    with pytest.raises(ValueError, match="w_scale must have shape"):
        q8.int8_linear_dynamic(x, wq, ws[:3])
    with pytest.raises(TypeError, match="out_scale is required"):
        q8.int8_linear_dynamic(x, wq, ws, out_dtype=torch.int8)
    with pytest.raises(ValueError, match="raw accumulator"):
        q8.int8_linear_dynamic(x, wq, ws, bias, out_dtype=torch.int32)

"""The CUDA C++ int8 kernels (csrc/cuda/int8_linear.cu) against the references of ops/int8_linear.py.

* Quantisers are bit-identical to the fp32 references (IEEE division, round half to even):
  every dtype, contiguous rows (16-byte vector path) and strided / transposed ones, ties,
  all-zero rows; non-finite rows get a NaN scale and the -128 marker instead of an error.
* The int32 accumulator equals the integer product exactly (M in {1, 17, 256}, ragged K and N,
  both tile configurations, K not a multiple of 16 (byte loads) and a multiple (cp.async),
  extreme values, strided / transposed xq, an unpacked wq).
* The float epilogue equals the reference bit for bit where the activation is exact
  (identity / relu / leaky_relu: the kernel rounds each multiply and add like torch), and is
  held to fastgan_kernels.testing's tolerances for tanh / sigmoid; requantised int8 outputs
  likewise (off by at most 1 at a rounding tie for tanh / sigmoid).

Skipped with the reason unless a CUDA GPU is present and the extension was built with its
CUDA kernels.
"""
import pytest
import torch

from fastgan_kernels import activations, testing
from fastgan_kernels.ops import int8_linear as q8

from conftest import cuda_kernel_marks  # noqa: E402

pytestmark = cuda_kernel_marks("int8_linear_fwd")

ACTS = list(range(len(activations.NAMES)))  # every activation code
EXACT_ACTS = (0, 1, 2)  # identity, relu, leaky_relu: no transcendental function
SLOPE = 0.2
FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _ids(v):
    return str(v).replace("torch.", "")


def ext():
    return torch.ops.fastgan_ext


def ref_acc(xq, wq):
    # float64 holds every int32 accumulator exactly (|acc| < 2**31 < 2**53)
    return (xq.double() @ wq.double().t()).to(torch.int32)


def make_operands(m, k, n, per_token=True):
    """Quantised x and w from nn.Linear-like floats (outputs of order 1)."""
    x = torch.randn(m, k, device="cuda")
    w = (torch.rand(n, k, device="cuda") * 2 - 1) / k ** 0.5
    wq, ws = q8.reference_quantize_per_token(w)
    if per_token:
        xq, xs = q8.reference_quantize_per_token(x)
    else:
        xs = (x.abs().max() / 127.0).reshape(1)
        xq = q8.reference_quantize_per_tensor(x, xs)
    bias = (torch.rand(n, device="cuda") * 2 - 1) / k ** 0.5
    return xq, xs, wq, ws, bias


def run(xq, xs, wq, ws, bias=None, act=0, out_dtype=torch.float32, out_scale=None, packed=True):
    w = ext().int8_pack_weight(wq) if packed else wq
    return ext().int8_linear_fwd(xq, xs, w, ws, bias, wq.shape[0], act, SLOPE, out_dtype, out_scale)


# ---------------------------------------------------------------- quantisers
@pytest.mark.parametrize("shape", [(1, 1), (17, 7), (17, 64), (256, 1000), (3, 4099), (5, 4096)], ids=_ids)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_ids)
def test_quantize_per_token_exact(dtype, shape):
    x = (torch.randn(shape, device="cuda") * 3).to(dtype)
    q, s = ext().quantize_per_token(x)
    rq, rs = q8.reference_quantize_per_token(x)
    assert q.dtype == torch.int8 and s.dtype == torch.float32 and q.is_contiguous()
    assert torch.equal(s, rs) and torch.equal(q, rq)


@pytest.mark.parametrize("layout", ["transposed", "strided_cols", "row_slice", "unaligned_rows"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_ids)
def test_quantize_per_token_non_contiguous(dtype, layout):
    m, k = 33, 96
    if layout == "transposed":
        x = torch.randn(k, m, device="cuda").to(dtype).t()
    elif layout == "strided_cols":
        x = torch.randn(m, 2 * k, device="cuda").to(dtype)[:, ::2]
    elif layout == "row_slice":
        x = torch.randn(m, k + 8, device="cuda").to(dtype)[:, 8:]  # rows stay 16-byte aligned
    else:
        x = torch.randn(m, k + 1, device="cuda").to(dtype)[:, 1:]  # rows off 16-byte boundaries
    q, s = ext().quantize_per_token(x)
    rq, rs = q8.reference_quantize_per_token(x)
    assert torch.equal(s, rs) and torch.equal(q, rq)


def test_quantize_per_token_ties_and_zero_rows():
    # Row 0: amax 127 -> scale 1, so x = k + 0.5 lands on ties (half to even); row 1 is all zero.
    x = torch.zeros(2, 256, device="cuda")
    x[0] = torch.arange(256, device="cuda") % 20 - 10 + 0.5
    x[0, 0] = 127.0
    q, s = ext().quantize_per_token(x)
    rq, rs = q8.reference_quantize_per_token(x)
    assert torch.equal(q, rq) and torch.equal(s, rs)
    assert s[0].item() == 1.0 and s[1].item() == pytest.approx(1 / 127)
    assert q[0, 1:4].tolist() == [-8, -8, -6]  # -8.5, -7.5, -6.5: half to even
    assert (q[1] == 0).all()


@pytest.mark.parametrize("k", [40, 64, 300])
def test_quantize_per_token_nonfinite_rows(k):
    x = torch.randn(6, k, device="cuda")
    x[1, k // 2] = float("nan")
    x[3, 0] = float("inf")
    x[4, k - 1] = -float("inf")
    q, s = ext().quantize_per_token(x)  # no error on CUDA: the NaN scale carries the news
    bad, good = [1, 3, 4], [0, 2, 5]
    assert s[bad].isnan().all() and (q[bad] == -128).all()
    rq, rs = q8.reference_quantize_per_token(x[good])
    assert torch.equal(s[good], rs) and torch.equal(q[good], rq)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=_ids)
def test_quantize_per_tensor_exact(dtype):
    x = (torch.randn(37, 131, device="cuda") * 4).to(dtype)
    scale = torch.tensor([0.02], device="cuda")
    q = ext().quantize_per_tensor(x, scale)
    assert torch.equal(q, q8.reference_quantize_per_tensor(x, scale))
    assert q.min().item() == -127 and q.max().item() == 127  # saturates
    xt = x.t()  # strided input
    assert torch.equal(ext().quantize_per_tensor(xt, scale), q8.reference_quantize_per_tensor(xt, scale))


def test_quantize_per_tensor_nonfinite():
    x = torch.tensor([[float("nan"), float("inf"), -float("inf"), 1.0, 0.5, 1.5]], device="cuda")
    q = ext().quantize_per_tensor(x, torch.ones(1, device="cuda"))
    assert q.tolist() == [[-128, 127, -127, 1, 0, 2]]  # NaN -> the -128 marker, Inf saturates, ties to even


# ---------------------------------------------------------------- packed weight and int32 GEMM
@pytest.mark.parametrize("k", [1, 16, 45, 64])
def test_pack_weight_layout(k):
    wq = torch.randint(-127, 128, (7, k), dtype=torch.int8, device="cuda")
    p = ext().int8_pack_weight(wq)
    kp = -(-k // 16) * 16
    assert p.shape == (7, kp) and p.dtype == torch.int8 and p.is_contiguous()
    assert torch.equal(p[:, :k], wq) and (p[:, k:] == 0).all()
    assert torch.equal(ext().int8_pack_weight(wq.t().contiguous().t()), p)  # any strides in


@pytest.mark.parametrize("kn", [(1, 1), (33, 19), (64, 48), (129, 45), (256, 130), (1000, 257)], ids=_ids)
@pytest.mark.parametrize("m", [1, 17, 256])
def test_int32_accumulator_exact(m, kn):
    k, n = kn
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
    ones = torch.ones(m, device="cuda"), torch.ones(n, device="cuda")
    acc = run(xq, ones[0], wq, ones[1], out_dtype=torch.int32)
    assert acc.dtype == torch.int32 and acc.shape == (m, n) and acc.is_contiguous()
    assert torch.equal(acc, ref_acc(xq, wq))


def test_int32_large_tiles_and_extremes():
    # Enough 128 x 128 tiles to fill any GPU (the large configuration), and |acc| near the bound.
    m, k, n = 2048, 1024, 2048
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device="cuda")
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, device="cuda")
    xq[:4] = -127
    wq[:3] = -127
    wq[3] = 127
    acc = run(xq, torch.ones(m, device="cuda"), wq, torch.ones(n, device="cuda"), out_dtype=torch.int32)
    assert torch.equal(acc, ref_acc(xq, wq))
    assert (acc[:4, :3] == 127 * 127 * k).all() and (acc[:4, 3] == -127 * 127 * k).all()
    k = q8.MAX_K  # the largest K the op layer admits: 127 * 127 * K < 2**31
    xq = torch.full((2, k), -127, dtype=torch.int8, device="cuda")
    wq = torch.full((3, k), -127, dtype=torch.int8, device="cuda")
    acc = run(xq, torch.ones(2, device="cuda"), wq, torch.ones(3, device="cuda"), out_dtype=torch.int32)
    assert (acc == 127 * 127 * k).all()


@pytest.mark.parametrize("layout", ["transposed", "strided", "unpacked_w", "unpacked_w_transposed"])
def test_int32_strided_operands(layout):
    m, k, n = 70, 100, 40
    xq = torch.randint(-128, 128, (m, k), dtype=torch.int8, device="cuda")
    wq = torch.randint(-128, 128, (n, k), dtype=torch.int8, device="cuda")
    packed = True
    if layout == "transposed":
        xq = xq.t().contiguous().t()
    elif layout == "strided":
        xq = torch.randint(-128, 128, (m, 3 * k), dtype=torch.int8, device="cuda")[:, ::3]
    elif layout == "unpacked_w":
        packed = False
    else:
        wq, packed = wq.t().contiguous().t(), False
    acc = run(xq, torch.ones(m, device="cuda"), wq, torch.ones(n, device="cuda"), out_dtype=torch.int32,
              packed=packed)
    assert torch.equal(acc, ref_acc(xq, wq))


# ---------------------------------------------------------------- epilogue
@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES, ids=_ids)
def test_float_epilogue(out_dtype, act, per_token, has_bias):
    xq, xs, wq, ws, bias = make_operands(17, 45, 19, per_token)
    bias = bias if has_bias else None
    y = run(xq, xs, wq, ws, bias, act, out_dtype)
    assert y.dtype == out_dtype and y.shape == (17, 19) and y.is_contiguous()
    ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, act, SLOPE, out_dtype, None)
    if act in EXACT_ACTS:
        assert torch.equal(y, ref)  # each multiply and add rounded like torch's
    else:
        testing.assert_close(y, ref)


@pytest.mark.parametrize("m", [1, 17, 256])
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES, ids=_ids)
def test_float_epilogue_batch_sizes_odd_k_n(out_dtype, m):
    xq, xs, wq, ws, bias = make_operands(m, 129, 45)
    y = run(xq, xs, wq, ws, bias, 2, out_dtype)
    assert torch.equal(y, q8.reference_int8_linear(xq, xs, wq, ws, bias, 2, SLOPE, out_dtype, None))


def assert_requant_close(q, y_ref, out_scale):
    """Equal to the reference except by 1 where y / out_scale is within fp32 noise of a .5 tie."""
    v = y_ref / out_scale
    rq = torch.round(v).clamp(-127, 127).to(torch.int8)
    diff = (q.long() - rq.long()).abs()
    assert diff.max().item() <= 1
    at_tie = (v - v.floor() - 0.5).abs() <= 1e-4 * v.abs().clamp_min(1.0)
    assert bool((at_tie | (diff == 0)).all()), "int8 output differs from the reference away from a tie"


@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("act", ACTS)
def test_int8_requantised_output(act, per_token):
    xq, xs, wq, ws, bias = make_operands(17, 77, 23, per_token)
    y_ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, act, SLOPE, torch.float32, None)
    out_scale = (y_ref.abs().max() / 150).reshape(1)  # some outputs saturate at +-127
    q = run(xq, xs, wq, ws, bias, act, torch.int8, out_scale)
    assert q.dtype == torch.int8 and q.shape == (17, 23)
    if act in EXACT_ACTS:
        assert torch.equal(q, q8.reference_int8_linear(xq, xs, wq, ws, bias, act, SLOPE, torch.int8, out_scale))
    else:
        assert_requant_close(q, y_ref, out_scale)
    assert q.abs().max().item() == 127  # the largest |y| saturates


def test_int8_output_ties_and_nan_marker():
    # acc = xq @ wq.T with unit scales: acc / 2 puts every odd accumulator exactly on a tie.
    xq = torch.arange(-60, 60, dtype=torch.int8, device="cuda").reshape(120, 1)
    wq = torch.ones(3, 1, dtype=torch.int8, device="cuda")
    one = torch.ones(1, device="cuda")
    q = run(xq, one, wq, torch.ones(3, device="cuda"), None, 0, torch.int8, torch.tensor([2.0], device="cuda"))
    assert torch.equal(q[:, 0], torch.round(xq[:, 0].float() / 2).to(torch.int8))
    bias = torch.tensor([float("nan"), 0.0, 0.0], device="cuda")
    q = run(xq, one, wq, torch.ones(3, device="cuda"), bias, 0, torch.int8, one)
    assert (q[:, 0] == -128).all() and torch.equal(q[:, 1], xq[:, 0])


def test_nan_scale_propagates_to_float_outputs():
    """A non-finite activation row is not lost: its NaN scale makes that output row NaN."""
    x = torch.randn(5, 64, device="cuda")
    x[2, 7] = float("nan")
    xq, xs = ext().quantize_per_token(x)
    _, _, wq, ws, bias = make_operands(1, 64, 24)
    y = run(xq, xs, wq, ws, bias, 1, torch.float32)
    assert y[2].isnan().all() and not y[[0, 1, 3, 4]].isnan().any()


# ---------------------------------------------------------------- public op, stream
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.int8, torch.int32], ids=_ids)
def test_public_op_with_cuda_ext(out_dtype):
    x = torch.randn(3, 11, 96, device="cuda")
    w = (torch.rand(40, 96, device="cuda") * 2 - 1) / 96 ** 0.5
    xq, xs = q8.quantize_per_token(x, backend="cuda_ext")
    wq, ws = q8.quantize_weight(w, backend="cuda_ext")
    packed = q8.pack_weight(wq, backend="cuda_ext")
    if out_dtype == torch.int32:
        kw = dict(activation="identity")
    else:
        kw = dict(bias=torch.randn(40, device="cuda") / 10, activation="leaky_relu", negative_slope=SLOPE)
    if out_dtype == torch.int8:
        kw["out_scale"] = torch.tensor([0.01], device="cuda")
    xs = xs.reshape(-1)  # per token: one scale per row of the flattened batch
    y = q8.int8_linear(xq, xs, wq, ws, out_dtype=out_dtype, w_packed=packed, backend="cuda_ext", **kw)
    ref = q8.int8_linear(xq, xs, wq, ws, out_dtype=out_dtype, backend="reference", **kw)
    assert y.shape == (3, 11, 40) and y.dtype == out_dtype
    assert torch.equal(y, ref)  # leaky_relu and the raw accumulator are exact


def test_empty_inputs():
    one = torch.ones(1, device="cuda")
    xq = torch.zeros(0, 8, dtype=torch.int8, device="cuda")
    wq = torch.zeros(4, 8, dtype=torch.int8, device="cuda")
    assert run(xq, one, wq, torch.ones(4, device="cuda")).shape == (0, 4)
    q, s = ext().quantize_per_token(torch.zeros(0, 5, device="cuda"))
    assert q.shape == (0, 5) and s.shape == (0,)


def test_current_stream():
    xq, xs, wq, ws, bias = make_operands(256, 128, 128)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = run(xq, xs, wq, ws, bias, 1, torch.float32)
    side.synchronize()
    assert torch.equal(y, q8.reference_int8_linear(xq, xs, wq, ws, bias, 1, SLOPE, torch.float32, None))

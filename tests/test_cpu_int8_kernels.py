"""The C++ CPU int8 kernels (csrc/cpu/int8_*.cpp, csrc/cpu/int8/) against the references of
fastgan_kernels.ops.int8_linear, on every CPU code path this machine can reach:

* int8_linear_fwd: portable, AVX512-VNNI (vpdpbusd), AMX tdpbssd under the scalar tile emulation
  (and on real tiles where the CPU has them). The int32 accumulator is exact on every path; the
  epilogue equals the reference bit for bit for identity / relu / leaky_relu (same fp32 operations
  in the same order, no FMA) and within the project's tolerances for tanh / sigmoid.
* quantize_per_token / quantize_per_tensor: portable and AVX-512, bit-exact (IEEE division, round
  half to even), any strides and fp32 / bf16 / fp16; NaN / Inf raise a ValueError.

Each path is forced with the ISA cap (and the test-only AMX emulation switch), and each test first
checks that the dispatcher really takes that path (fastgan_ext::int8_linear_cpu_path).
"""
from __future__ import annotations

import contextlib
import struct

import pytest
import torch

from fastgan_kernels import _ext, testing
from fastgan_kernels.ops import int8_linear as q8

from conftest import torch_threads  # noqa: E402

pytestmark = pytest.mark.skipif(not _ext.has_kernel("int8_linear_fwd", "CPU"),
                                reason=_ext.REASON or "the extension has no CPU int8_linear kernel")

E = torch.ops.fastgan_ext if _ext.AVAILABLE else None
ACTS = range(5)  # identity, relu, leaky_relu, tanh, sigmoid
EXACT_ACTS = (0, 1, 2)
SLOPE = 0.2
FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def _max_isa() -> int:
    return int(_ext.max_isa()) if _ext.AVAILABLE else 0


def _feature(name: str) -> bool:
    return bool(_ext.cpu_features().get(name, False)) if _ext.AVAILABLE else False


# GEMM path -> (ISA cap, AMX emulation on, whether this machine can run it)
GEMM_PATHS = {
    "portable": ("portable", False, True),
    "avx512_vnni": ("avx512_vnni", False, _max_isa() >= _ext.Isa.AVX512_VNNI),
    "amx_int8": ("amx", False, _max_isa() >= _ext.Isa.AMX and _feature("amx_int8")),
    "amx_int8_emulated": ("amx", True, _max_isa() >= _ext.Isa.AVX512),
}
# Quantiser path -> ISA cap
QUANT_PATHS = {"portable": "portable", "avx512": "avx512"}


@contextlib.contextmanager
def gemm_path(path: str):
    cap, emulate, runnable = GEMM_PATHS[path]
    if not runnable:
        pytest.skip(f"this CPU cannot run the {path} path")
    with _ext.cpu_isa(cap), _ext.amx_emulation(emulate):
        assert E.int8_linear_cpu_path() == path
        yield


@contextlib.contextmanager
def quant_path(path: str):
    cap = QUANT_PATHS[path]
    if path == "avx512" and _max_isa() < _ext.Isa.AVX512:
        pytest.skip("this CPU has no AVX-512")
    with _ext.cpu_isa(cap):
        yield


def make(m, k, n, extreme=False):
    if extreme:  # only the ends of the range: the largest products and sums
        xq = (torch.randint(0, 2, (m, k)) * 254 - 127).to(torch.int8)
        wq = (torch.randint(0, 2, (n, k)) * 254 - 127).to(torch.int8)
    else:
        xq = torch.randint(-127, 128, (m, k), dtype=torch.int8)
        wq = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    xs = torch.rand(m) * 0.02 + 0.001
    ws = torch.rand(n) * 0.02 + 0.001
    return xq, xs, wq, ws, torch.randn(n)


def fwd(xq, xs, blob, ws, bias, n, act, out_dtype, out_scale=None):
    return E.int8_linear_fwd(xq, xs, blob, ws, bias, n, act, SLOPE, out_dtype, out_scale)


def int_ref(xq, wq):
    return xq.long() @ wq.long().t()


# ---- int32 accumulator ---------------------------------------------------------------------
SHAPES = [(1, 1, 1), (1, 100, 784), (17, 33, 19), (17, 63, 48), (17, 64, 49), (17, 65, 33), (256, 127, 16),
          (256, 129, 65), (256, 257, 17), (8, 320, 97)]


@pytest.mark.parametrize("path", GEMM_PATHS)
@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_int32_accumulator_is_exact(path, m, k, n, extreme):
    xq, _, wq, _, _ = make(m, k, n, extreme)
    blob = E.int8_pack_weight(wq)
    with gemm_path(path):
        acc = fwd(xq, torch.ones(1), blob, torch.ones(n), None, n, 0, torch.int32)
    assert acc.dtype == torch.int32 and acc.shape == (m, n)
    assert torch.equal(acc.long(), int_ref(xq, wq))


@pytest.mark.parametrize("path", GEMM_PATHS)
def test_strided_activations(path):
    xq, _, wq, _, _ = make(17, 2 * 70, 40)
    blob = E.int8_pack_weight(wq[:, ::2])  # a strided weight packs too
    views = [xq[:, ::2], xq[:, ::2].t().contiguous().t(), xq[3:, 1::2]]
    with gemm_path(path):
        for x in views:
            acc = fwd(x, torch.ones(1), blob, torch.ones(40), None, 40, 0, torch.int32)
            assert torch.equal(acc.long(), int_ref(x, wq[:, ::2]))


@pytest.mark.parametrize("path", GEMM_PATHS)
def test_largest_k_is_exact(path):
    # 127 * 127 * K just below 2**31: the VNNI compensation 128 * sum_k w exceeds int32 and wraps,
    # and so do the u8 x s8 sums; the result must still be exact.
    k = q8.MAX_K
    xq = torch.full((2, k), -127, dtype=torch.int8)
    xq[1] = 127
    wq = torch.full((3, k), -127, dtype=torch.int8)
    wq[1] = 127
    wq[2, ::2] = 127
    blob = E.int8_pack_weight(wq)
    with gemm_path(path):
        acc = fwd(xq, torch.ones(1), blob, torch.ones(3), None, 3, 0, torch.int32)
    assert torch.equal(acc.long(), int_ref(xq, wq))
    assert acc[0, 0] == 127 * 127 * k and acc[1, 0] == -127 * 127 * k


def test_threads_split_the_same_way():
    xq, xs, wq, ws, b = make(256, 200, 100)
    blob = E.int8_pack_weight(wq)
    with torch_threads(1):
        one = fwd(xq, xs, blob, ws, b, 100, 2, torch.float32)
    with torch_threads(max(2, torch.get_num_threads())):
        many = fwd(xq, xs, blob, ws, b, 100, 2, torch.float32)
    assert torch.equal(one, many)


# ---- epilogue ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", GEMM_PATHS)
@pytest.mark.parametrize("act", ACTS)
def test_float_outputs_match_the_reference(path, act):
    m, k, n = 17, 65, 49
    xq, xs, wq, ws, bias = make(m, k, n)
    blob = E.int8_pack_weight(wq)
    with gemm_path(path):
        for out_dtype in FLOATS:
            for x_scale, b in [(xs, bias), (xs[:1], None)]:
                y = fwd(xq, x_scale, blob, ws, b, n, act, out_dtype)
                ref = q8.reference_int8_linear(xq, x_scale, wq, ws, b, act, SLOPE, out_dtype, None)
                assert y.dtype == out_dtype and y.shape == (m, n)
                if act in EXACT_ACTS:
                    assert torch.equal(y, ref), (out_dtype, (y.float() - ref.float()).abs().max())
                else:
                    testing.assert_close(y, ref)


@pytest.mark.parametrize("path", GEMM_PATHS)
@pytest.mark.parametrize("act", ACTS)
def test_int8_output_requantises(path, act):
    m, k, n = 33, 96, 40
    xq, xs, wq, ws, bias = make(m, k, n)
    blob = E.int8_pack_weight(wq)
    out_scale = torch.tensor([0.01])
    with gemm_path(path):
        y = fwd(xq, xs, blob, ws, bias, n, act, torch.int8, out_scale)
    ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, act, SLOPE, torch.int8, out_scale)
    assert y.dtype == torch.int8
    assert (y.int() - ref.int()).abs().max() <= 1  # a tanh / sigmoid value near a tie may land either way
    if act in EXACT_ACTS:
        assert torch.equal(y, ref)
    if act == 0:
        assert y.min() == -127 and y.max() == 127  # the scale is small enough to saturate


def test_int8_output_rounds_ties_to_even():
    # acc * 1 * 1 = acc; out_scale 2 makes every odd acc a tie: k + 0.5 -> even.
    xq = torch.arange(-9, 10, dtype=torch.int8).reshape(-1, 1)
    wq = torch.ones(1, 1, dtype=torch.int8)
    blob = E.int8_pack_weight(wq)
    expected = torch.round(xq.float() / 2).to(torch.int8)
    for path in GEMM_PATHS:
        if not GEMM_PATHS[path][2]:
            continue
        with gemm_path(path):
            y = fwd(xq, torch.ones(1), blob, torch.ones(1), None, 1, 0, torch.int8, torch.tensor([2.0]))
        assert torch.equal(y, expected), path


# ---- packed blob ---------------------------------------------------------------------------
def test_packed_layout():
    n, k = 35, 70
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    blob = E.int8_pack_weight(wq)
    assert blob.dtype == torch.uint8 and blob.dim() == 1
    magic, version, bn, bk, kp, panels, comp_off, data_off, total = struct.unpack("<IIqqqqqqq", blob[:64].numpy())
    assert (bn, bk, kp, panels, total) == (n, k, 128, 3, blob.numel()) and version == 1
    comp = blob[comp_off:comp_off + 4 * panels * 16].view(torch.int32)
    sums = torch.zeros(panels * 16, dtype=torch.long)
    sums[:n] = 128 * wq.long().sum(1)
    assert torch.equal(comp.long(), sums)
    data = blob[data_off:].view(torch.int8).reshape(panels, kp // 4, 16, 4)
    padded = torch.zeros(panels * 16, kp, dtype=torch.int8)
    padded[:n, :k] = wq
    expected = padded.reshape(panels, 16, kp // 4, 4).permute(0, 2, 1, 3)
    assert torch.equal(data, expected)


def test_blob_of_another_shape_is_refused():
    xq, xs, wq, ws, _ = make(4, 64, 32)
    good = E.int8_pack_weight(wq)
    with pytest.raises(ValueError, match=r"another shape.*\[32, 64\].*\[32, 63\]"):
        fwd(xq, xs, E.int8_pack_weight(wq[:, :63].contiguous()), ws, None, 32, 0, torch.float32)
    with pytest.raises(ValueError, match="another shape"):
        fwd(xq, xs, good, ws[:31], None, 31, 0, torch.float32)
    with pytest.raises(ValueError, match="not a CPU packed weight"):
        fwd(xq, xs, wq.reshape(-1).view(torch.uint8), ws, None, 32, 0, torch.float32)
    with pytest.raises(ValueError, match="inconsistent with its size"):
        fwd(xq, xs, good[:-64].clone(), ws, None, 32, 0, torch.float32)
    with pytest.raises(ValueError, match="1-D uint8 blob"):
        fwd(xq, xs, wq, ws, None, 32, 0, torch.float32)
    # through the public op, with a blob made for another layer
    with pytest.raises(ValueError, match="another shape"):
        q8.int8_linear(xq, xs, wq, ws, w_packed=E.int8_pack_weight(wq[:16].contiguous()), backend="cpu_ext")


# ---- quantisers ----------------------------------------------------------------------------
def _rows_with_ties(dtype):
    x = torch.randn(9, 300) * 3
    x[0] = 0.0                                  # all-zero row: scale 1/127
    x[1, :9] = torch.tensor([127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5])  # amax 127: scale 1, ties
    x[1, 9:] = torch.arange(291) % 7 - 3.5      # more ties
    x[2] = -0.0
    x[3] *= 1e-39                               # denormals
    x[5] = torch.linspace(-1, 1, 300)
    x = x.to(dtype)
    x[4, 5] = torch.finfo(dtype).max            # the largest finite amax
    return x


@pytest.mark.parametrize("path", QUANT_PATHS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_quantize_per_token_is_bit_exact(path, dtype):
    x = _rows_with_ties(dtype)
    views = {"contiguous": x, "strided": x[:, ::3], "column-major": x.t().contiguous().t(), "offset": x[2:, 7:200]}
    with quant_path(path):
        for name, v in views.items():
            q, s = E.quantize_per_token(v)
            rq, rs = q8.reference_quantize_per_token(v)
            assert q.is_contiguous() and q.dtype == torch.int8 and s.dtype == torch.float32
            assert torch.equal(s, rs), name
            assert torch.equal(q, rq), name
    assert s[0] == pytest.approx(1 / 127)


@pytest.mark.parametrize("path", QUANT_PATHS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_quantize_per_tensor_is_bit_exact(path, dtype):
    x = torch.randn(13, 97) * 4
    x[0, :9] = torch.tensor([0.25, 0.75, 1.25, -0.25, -0.75, -1.25, 63.25, 100.0, -100.0])  # / 0.5: ties, saturation
    x = x.to(dtype)
    scale = torch.tensor([0.5])
    with quant_path(path):
        for v in (x, x[:, 1::2], x.t().contiguous().t()):
            q = E.quantize_per_tensor(v, scale)
            assert torch.equal(q, q8.reference_quantize_per_tensor(v, scale))
    assert q.max() == 127 and q.min() == -127


@pytest.mark.parametrize("path", QUANT_PATHS)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_raises(path, dtype, bad):
    x = torch.randn(9, 40)
    x[5, 33] = bad
    x[7, 0] = bad
    x = x.to(dtype)
    with quant_path(path):
        with pytest.raises(ValueError, match=r"quantize_per_token: x has NaN or Inf \(first in row 5\)"):
            E.quantize_per_token(x)
        with pytest.raises(ValueError, match=r"quantize_per_tensor: x has NaN or Inf \(first in row 5\)"):
            E.quantize_per_tensor(x, torch.tensor([0.1]))
        with pytest.raises(ValueError, match="NaN or Inf"):
            q8.quantize_per_token(x, "cpu_ext")
        with pytest.raises(ValueError, match="NaN or Inf"):
            E.quantize_per_token(x[:, 1::2].t().contiguous().t()[:, 15:])  # strided rows too


def test_many_rows_in_parallel_report_the_first_bad_row():
    x = torch.randn(4096, 64)
    x[3000, 1] = float("nan")
    x[1000, 2] = float("inf")
    with pytest.raises(ValueError, match=r"first in row 1000\)"):
        E.quantize_per_token(x)


# ---- int8_linear_dynamic_fwd: per-token quantisation fused into the GEMM's A packing -------------
def dyn(x, blob, ws, bias, n, act, out_dtype, out_scale=None):
    return E.int8_linear_dynamic_fwd(x, blob, ws, bias, n, act, SLOPE, out_dtype, out_scale)


def two_step(x, blob, ws, bias, n, act, out_dtype, out_scale=None):
    q, s = E.quantize_per_token(x)
    return fwd(q, s, blob, ws, bias, n, act, out_dtype, out_scale)


def _float_views(m, k, dtype):
    wide = (torch.randn(m, 2 * k + 3) * 3).to(dtype)
    if m >= 9:  # zero, tie, denormal and largest-finite rows (_rows_with_ties) among random ones
        wide[:9, :k] = _rows_with_ties(dtype)[:, :k]
    x = wide[:, :k]
    return {"contiguous": wide[:, :k].contiguous(), "row-strided": wide[:, :k], "strided": wide[:, 1:2 * k + 1:2],
            "column-major": x.t().contiguous().t()}


@pytest.mark.parametrize("path", list(GEMM_PATHS) + ["portable+avx512_quantiser"])
@pytest.mark.parametrize("m", [1, 17, 256])
@pytest.mark.parametrize("dtype", FLOATS)
def test_dynamic_equals_quantize_then_linear(path, m, dtype):
    k, n = (67, 37) if m > 1 else (301, 49)  # odd K and N: tails in the packing and the epilogue
    _, _, wq, ws, bias = make(1, k, n)
    blob = E.int8_pack_weight(wq)
    cases = [(torch.float32, 2, bias, None), (dtype, 3, None, None), (torch.int8, 1, bias, torch.tensor([0.05])),
             (torch.int32, 0, None, None)]
    ctx = _ext.cpu_isa("avx512") if path == "portable+avx512_quantiser" else gemm_path(path)
    if path == "portable+avx512_quantiser" and _max_isa() < _ext.Isa.AVX512:
        pytest.skip("this CPU has no AVX-512")
    with ctx:
        for name, x in _float_views(m, k, dtype).items():
            for out_dtype, act, b, out_scale in cases:
                got = dyn(x, blob, ws, b, n, act, out_dtype, out_scale)
                assert got.dtype == out_dtype and got.shape == (m, n) and got.is_contiguous()
                assert torch.equal(got, two_step(x, blob, ws, b, n, act, out_dtype, out_scale)), (name, out_dtype)


def test_dynamic_threads_split_the_same_way():
    x = torch.randn(1024, 64) * 3
    wq = torch.randint(-127, 128, (100, 64), dtype=torch.int8)
    blob, ws, b = E.int8_pack_weight(wq), torch.rand(100) * 0.02, torch.randn(100)
    with torch_threads(1):
        one = dyn(x, blob, ws, b, 100, 2, torch.float32)
    with torch_threads(max(2, torch.get_num_threads())):
        many = dyn(x, blob, ws, b, 100, 2, torch.float32)
    assert torch.equal(one, many) and torch.equal(one, two_step(x, blob, ws, b, 100, 2, torch.float32))


@pytest.mark.parametrize("path", GEMM_PATHS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_dynamic_non_finite_input_raises(path, bad):
    wq = torch.randint(-127, 128, (20, 40), dtype=torch.int8)
    blob, ws = E.int8_pack_weight(wq), torch.rand(20)
    with gemm_path(path):
        for dtype in FLOATS:
            x = torch.randn(19, 80).to(dtype)
            x[5, 34] = bad
            x[17, 0] = bad
            for v in (x[:, :40], x[:, ::2].t().contiguous().t()):
                with pytest.raises(ValueError, match=r"int8_linear_dynamic_fwd: x has NaN or Inf \(first in row 5\)"):
                    dyn(v, blob, ws, None, 20, 0, torch.float32)
        x = torch.randn(4096, 40)  # rows packed by both threads: still the first bad row
        x[3000, 1], x[1000, 2] = float("nan"), float("inf")
        with pytest.raises(ValueError, match=r"first in row 1000\)"):
            dyn(x, blob, ws, None, 20, 0, torch.float32)


def test_dynamic_refuses_what_int8_linear_fwd_refuses():
    _, _, wq, ws, _ = make(1, 64, 32)
    blob = E.int8_pack_weight(wq)
    with pytest.raises(ValueError, match=r"int8_linear_dynamic_fwd \(cpu\): w_packed .*another shape"):
        dyn(torch.randn(4, 63), blob, ws, None, 32, 0, torch.float32)
    with pytest.raises(TypeError, match="x must be float32, bfloat16 or float16"):
        dyn(torch.zeros(4, 64, dtype=torch.int8), blob, ws, None, 32, 0, torch.float32)
    with pytest.raises(ValueError, match="out_dtype int8 needs out_scale"):
        dyn(torch.randn(4, 64), blob, ws, None, 32, 0, torch.int8)
    assert dyn(torch.randn(0, 64), blob, ws, None, 32, 0, torch.float32).shape == (0, 32)

"""The AVX2 int8 path (csrc/cpu/int8_avx2.cpp, int8/epilogue_avx2.h, int8_quantize_avx2.cpp): the
vpmaddwd GEMM that int8_linear_fwd / int8_linear_dynamic_fwd and the layer chain take on CPUs with
AVX2 but without AVX512-VNNI, and the AVX2 quantisers.

Checked against the PyTorch references of fastgan_kernels.ops.int8_linear (the int32 accumulator
exactly, the epilogue bit for bit for identity / relu / leaky_relu and within tolerance for the
transcendental activations) and against the portable kernel reached through the ISA cap (the same
numbers: the cap changes the speed, not the result). On an AVX-512 machine the path is still
reachable with the ISA capped at AVX2; without AVX2 everything here is skipped.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

import fastgan_kernels as fk
from fastgan_kernels import _ext, testing
from fastgan_kernels.models import seed_generator
from fastgan_kernels.ops import int8_linear as q8

from conftest import torch_threads  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not _ext.has_kernel("int8_linear_fwd", "CPU"),
                       reason=_ext.REASON or "the extension has no CPU int8_linear kernel"),
    pytest.mark.skipif(_ext.AVAILABLE and _ext.max_isa() < _ext.Isa.AVX2, reason="this CPU has no AVX2"),
]

E = torch.ops.fastgan_ext if _ext.AVAILABLE else None
SLOPE = 0.2
ALL_ACTS = range(9)  # identity relu leaky_relu tanh sigmoid gelu gelu_tanh silu elu (activations.py)
EXACT_ACTS = (0, 1, 2)
FLOATS = (torch.float32, torch.bfloat16, torch.float16)


@contextlib.contextmanager
def path(name: str):
    """Caps the ISA so that int8_linear_fwd takes `name` ("avx2" or "portable"), and checks it does."""
    with _ext.cpu_isa(name):
        assert E.int8_linear_cpu_path() == name
        yield


def make(m, k, n, extreme=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    if extreme:  # only the ends of the range: the largest products and sums
        xq = (torch.randint(0, 2, (m, k), generator=g) * 254 - 127).to(torch.int8)
        wq = (torch.randint(0, 2, (n, k), generator=g) * 254 - 127).to(torch.int8)
    else:
        xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=g)
        wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=g)
    xs = torch.rand(m, generator=g) * 0.02 + 0.001
    ws = torch.rand(n, generator=g) * 0.02 + 0.001
    return xq, xs, wq, ws, torch.randn(n, generator=g)


def fwd(xq, xs, blob, ws, bias, n, act, out_dtype, out_scale=None):
    return E.int8_linear_fwd(xq, xs, blob, ws, bias, n, act, SLOPE, out_dtype, out_scale)


def dyn(x, blob, ws, bias, n, act, out_dtype, out_scale=None):
    return E.int8_linear_dynamic_fwd(x, blob, ws, bias, n, act, SLOPE, out_dtype, out_scale)


# ---- dispatch ---------------------------------------------------------------------------------------
def test_avx2_is_the_path_here_and_the_cap_reaches_portable():
    features = _ext.cpu_features()
    if _ext.max_isa() >= _ext.Isa.AVX512_VNNI and features.get("avx512_vnni"):
        with _ext.cpu_isa("avx2"):  # an AVX512-VNNI machine reaches the AVX2 path only under the cap
            assert E.int8_linear_cpu_path() == "avx2"
    else:  # AVX2 without VNNI (the project's CI CPU): the AVX2 path is the default
        assert E.int8_linear_cpu_path() == "avx2"
    with _ext.cpu_isa("portable"):
        assert E.int8_linear_cpu_path() == "portable"


# ---- int32 accumulator ---------------------------------------------------------------------------
# M, K, N from {1, 17, 1000} plus the micro-tile edges: 6-row panels (tails of 1 and 2 rows take
# whole-panel tiles), 8-column half panels, 16-column panels, 32-column blocks, K groups of 4 and
# the 16-k widening step of the A packing.
SHAPES = [(1, 1, 1), (1, 1000, 17), (17, 1, 1000), (17, 17, 17), (1000, 17, 1), (1000, 1000, 17),
          (17, 1000, 1000), (2, 33, 40), (6, 16, 8), (7, 15, 9), (8, 40, 50), (12, 63, 33), (13, 65, 47)]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_int32_accumulator_is_exact(m, k, n, extreme):
    xq, _, wq, _, _ = make(m, k, n, extreme)
    blob = E.int8_pack_weight(wq)
    with path("avx2"):
        acc = fwd(xq, torch.ones(1), blob, torch.ones(n), None, n, 0, torch.int32)
    assert acc.dtype == torch.int32 and acc.shape == (m, n)
    assert torch.equal(acc.long(), xq.long() @ wq.long().t())


def test_largest_k_is_exact():
    k = q8.MAX_K  # 127 * 127 * K just below 2**31
    xq = torch.full((2, k), -127, dtype=torch.int8)
    xq[1] = 127
    wq = torch.full((3, k), -127, dtype=torch.int8)
    wq[1] = 127
    wq[2, ::2] = 127
    with path("avx2"):
        acc = fwd(xq, torch.ones(1), E.int8_pack_weight(wq), torch.ones(3), None, 3, 0, torch.int32)
    assert torch.equal(acc.long(), xq.long() @ wq.long().t())
    assert acc[0, 0] == 127 * 127 * k and acc[1, 0] == -127 * 127 * k


def test_non_contiguous_activations():
    xq, _, wq, _, _ = make(17, 2 * 70, 40)
    blob = E.int8_pack_weight(wq[:, ::2])
    with path("avx2"):
        for x in (xq[:, ::2], xq[:, ::2].t().contiguous().t(), xq[3:, 1::2]):
            acc = fwd(x, torch.ones(1), blob, torch.ones(40), None, 40, 0, torch.int32)
            assert torch.equal(acc.long(), x.long() @ wq[:, ::2].long().t())


# ---- epilogue ------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ALL_ACTS)
def test_float_outputs_match_the_reference(act):
    m, k, n = 17, 65, 49  # a row tail (17 = 2 x 6 + 5) and a column tail (49 = 3 x 16 + 1)
    xq, xs, wq, ws, bias = make(m, k, n, seed=act)
    blob = E.int8_pack_weight(wq)
    with path("avx2"):
        for out_dtype in FLOATS:
            for x_scale, b in [(xs, bias), (xs[:1], None)]:
                y = fwd(xq, x_scale, blob, ws, b, n, act, out_dtype)
                ref = q8.reference_int8_linear(xq, x_scale, wq, ws, b, act, SLOPE, out_dtype, None)
                assert y.dtype == out_dtype and y.shape == (m, n)
                if act in EXACT_ACTS:
                    assert torch.equal(y, ref), (out_dtype, (y.float() - ref.float()).abs().max())
                else:
                    testing.assert_close(y, ref)


@pytest.mark.parametrize("act", ALL_ACTS)
def test_int8_output_requantises(act):
    m, k, n = 33, 96, 40
    xq, xs, wq, ws, bias = make(m, k, n, seed=act)
    blob = E.int8_pack_weight(wq)
    out_scale = torch.tensor([0.01])
    with path("avx2"):
        y = fwd(xq, xs, blob, ws, bias, n, act, torch.int8, out_scale)
    ref = q8.reference_int8_linear(xq, xs, wq, ws, bias, act, SLOPE, torch.int8, out_scale)
    assert y.dtype == torch.int8
    assert (y.int() - ref.int()).abs().max() <= 1  # a vector tanh / erf near a tie may land either way
    if act in EXACT_ACTS:
        assert torch.equal(y, ref)
    if act == 0:
        assert y.min() == -127 and y.max() == 127  # saturates at the symmetric int8 range


def test_int8_output_rounds_ties_to_even_and_nan_to_zero():
    xq = torch.arange(-9, 10, dtype=torch.int8).reshape(-1, 1)
    blob = E.int8_pack_weight(torch.ones(1, 1, dtype=torch.int8))
    with path("avx2"):
        y = fwd(xq, torch.ones(1), blob, torch.ones(1), None, 1, 0, torch.int8, torch.tensor([2.0]))
        nan = fwd(xq, torch.ones(1), blob, torch.tensor([float("nan")]), None, 1, 0, torch.int8, torch.tensor([2.0]))
    assert torch.equal(y, torch.round(xq.float() / 2).to(torch.int8))
    assert torch.equal(nan, torch.zeros_like(nan))


@pytest.mark.parametrize("act", ALL_ACTS)
def test_capping_to_portable_gives_the_same_result(act):
    m, k, n = 38, 77, 70  # 6 full row panels and a 2-row tail (whole-panel tiles), a 6-column tail
    xq, xs, wq, ws, bias = make(m, k, n, seed=10 + act)
    blob = E.int8_pack_weight(wq)
    cases = [(torch.int32, None), (torch.float32, None), (torch.bfloat16, None), (torch.int8, torch.tensor([0.02]))]
    for out_dtype, out_scale in cases:
        outs = []
        for name in ("avx2", "portable"):
            with path(name):
                outs.append(fwd(xq, xs, blob, ws, bias, n, act, out_dtype, out_scale))
        if act in EXACT_ACTS or out_dtype == torch.int32:
            assert torch.equal(outs[0], outs[1]), out_dtype
        elif out_dtype == torch.int8:  # the portable epilogue uses the scalar tanh / erf / exp
            assert (outs[0].int() - outs[1].int()).abs().max() <= 1
        else:
            testing.assert_close(outs[0], outs[1])


def test_threads_split_the_same_way():
    xq, xs, wq, ws, b = make(256, 200, 100)
    blob = E.int8_pack_weight(wq)
    with path("avx2"):
        with torch_threads(1):
            one = fwd(xq, xs, blob, ws, b, 100, 2, torch.float32)
        with torch_threads(max(2, torch.get_num_threads())):
            many = fwd(xq, xs, blob, ws, b, 100, 2, torch.float32)
    assert torch.equal(one, many)


# ---- AVX2 quantisers and the dynamic op ----------------------------------------------------------
def _views(m, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    wide = (torch.randn(m, 2 * k + 3, generator=g) * 3).to(dtype)
    wide[0, :k] = 0  # a zero row: scale 1/127
    wide[min(1, m - 1), :k:3] = 2.5  # ties of x / scale
    return {"contiguous": wide[:, :k].contiguous(), "row-strided": wide[:, :k], "strided": wide[:, 1:2 * k + 1:2],
            "column-major": wide[:, :k].t().contiguous().t()}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [1, 17, 1000])
def test_quantisers_equal_the_portable_ones(dtype, k):
    for name, x in _views(19, k, dtype).items():
        with _ext.cpu_isa("avx2"):
            q, s = E.quantize_per_token(x)
            qt = E.quantize_per_tensor(x, torch.tensor([0.02]))
        with _ext.cpu_isa("portable"):
            q0, s0 = E.quantize_per_token(x)
            qt0 = E.quantize_per_tensor(x, torch.tensor([0.02]))
        assert torch.equal(q, q0) and torch.equal(s, s0) and torch.equal(qt, qt0), name
        ref_q, ref_s = q8.quantize_per_token(x, backend="reference")
        assert torch.equal(q, ref_q) and torch.equal(s, ref_s), name


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_quantisers_refuse_non_finite_rows(bad):
    x = torch.randn(9, 37)
    x[4, 36] = bad  # in the 8-lane tail
    with _ext.cpu_isa("avx2"):
        with pytest.raises(ValueError, match=r"first in row 4\)"):
            E.quantize_per_token(x)
        with pytest.raises(ValueError, match=r"first in row 4\)"):
            E.quantize_per_tensor(x, torch.tensor([0.1]))


@pytest.mark.parametrize("m", [1, 17, 1000])
@pytest.mark.parametrize("dtype", FLOATS)
def test_dynamic_equals_quantize_then_linear(m, dtype):
    k, n = (67, 37) if m > 1 else (301, 49)
    _, _, wq, ws, bias = make(1, k, n)
    blob = E.int8_pack_weight(wq)
    with path("avx2"):
        for name, x in _views(m, k, dtype).items():
            q, s = E.quantize_per_token(x)
            for out_dtype, act, b, out_scale in [(torch.float32, 2, bias, None), (torch.int8, 1, bias, torch.tensor([0.05])),
                                                 (torch.int32, 0, None, None)]:
                got = dyn(x, blob, ws, b, n, act, out_dtype, out_scale)
                assert torch.equal(got, fwd(q, s, blob, ws, b, n, act, out_dtype, out_scale)), (name, out_dtype)


def test_dynamic_non_finite_input_raises():
    wq = torch.randint(-127, 128, (20, 40), dtype=torch.int8)
    blob, ws = E.int8_pack_weight(wq), torch.rand(20)
    x = torch.randn(19, 40)
    x[5, 34], x[17, 0] = float("nan"), float("inf")
    with path("avx2"), pytest.raises(ValueError, match=r"x has NaN or Inf \(first in row 5\)"):
        dyn(x, blob, ws, None, 20, 0, torch.float32)


# ---- the layer chain above its small-batch range -------------------------------------------------
@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_chain_int8_layers_equal_the_portable_kernel(mode):
    torch.manual_seed(0)
    g = seed_generator().eval()
    calib = [torch.randn(64, 100) for _ in range(2)]
    compiled = fk.compile_generator(fk.quantize(g, calib, mode=mode)[0])
    z = torch.randn(70, 100)  # above the chain's small-batch range (8 rows): the GEMM path
    with _ext.cpu_isa("avx2"):
        got = compiled(z)
    with _ext.cpu_isa("portable"):
        want = compiled(z)
    # The hidden layers' leaky_relu epilogues are exact; the output tanh may differ in its last bits.
    torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)

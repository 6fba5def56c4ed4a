"""The Triton int8 kernels (fastgan_kernels/triton/int8_linear.py) against plain-PyTorch references.

Runs on CUDA tensors when a GPU exists, in Triton's interpreter otherwise (conftest.py).
Quantisers must be bit-identical to the fp32 reference (IEEE division, round half to
even); the int32 GEMM must equal the integer product exactly; the float epilogue is
held to fastgan_kernels.testing's tolerances and requantised int8 outputs may differ
from the reference by 1 only where y / out_scale sits at a rounding tie.
"""
import os

import pytest
import torch

from fastgan_kernels import activations, testing
from fastgan_kernels.triton import int8_linear as k8

from conftest import DEVICE

ACTS = list(range(len(activations.NAMES)))  # every activation code
SLOPE = 0.2


# ---------------------------------------------------------------- references (fp32 / integer)
def ref_quant_token(x):
    xf = x.float()
    amax = xf.abs().amax(1) if xf.shape[1] else torch.zeros(xf.shape[0], device=x.device)
    one = torch.ones((), device=x.device)
    scale = torch.where(amax == 0, one, amax) / 127.0
    return ref_quant(xf, scale[:, None]), scale


def ref_quant(xf, scale):
    return torch.round(xf / scale).clamp(-127, 127).to(torch.int8)


def ref_acc(xq, wq):
    return (xq.cpu().long() @ wq.cpu().long().T).to(torch.int32).to(xq.device)


def ref_epilogue(acc, xs, ws, bias, act):
    y = acc.float() * (xs[:, None] if xs.numel() > 1 else xs) * ws[None, :]
    if bias is not None:
        y = y + bias
    return activations.apply(y, act, SLOPE)


def make_operands(m, k, n, per_token=True, device=DEVICE):
    """Quantised x and w from nn.Linear-like floats, so outputs are of order 1."""
    x = torch.randn(m, k, device=device)
    w = (torch.rand(n, k, device=device) * 2 - 1) / k ** 0.5
    wq, ws = ref_quant_token(w)
    if per_token:
        xq, xs = ref_quant_token(x)
    else:
        xs = (x.abs().max() / 127.0).reshape(1)
        xq = ref_quant(x, xs)
    bias = (torch.rand(n, device=device) * 2 - 1) / k ** 0.5
    return xq, xs, wq, ws, bias


def run(xq, xs, wq, ws, bias, act=0, out_dtype=torch.float32, out_scale=None):
    return k8.int8_linear(xq, xs, wq, ws, bias, wq.shape[0], act, SLOPE, out_dtype, out_scale)


# ---------------------------------------------------------------- rounding and quantisers
def test_round_half_even_matches_torch_round():
    halves = torch.arange(-130.0, 130.5, 0.5)
    near = torch.cat([torch.nextafter(halves, halves + 1), torch.nextafter(halves, halves - 1)])
    special = torch.tensor([0.49999997, -0.49999997, 2.5000002, 1e30, -1e30, 0.0, -0.0, 1e-40])
    x = torch.cat([halves, near, special, torch.randn(4000) * 60]).to(DEVICE)
    for s in (1.0, 0.5, 0.25, 3.0):  # exact ties survive division by powers of two; 3.0 gives inexact quotients
        scale = torch.tensor([s], device=DEVICE)
        q = k8.quantize_per_tensor(x[None, :], scale)[0]
        assert torch.equal(q, ref_quant(x, scale))


def test_nonfinite_per_tensor():
    x = torch.tensor([[float("nan"), float("inf"), -float("inf"), 1.0]], device=DEVICE)
    q = k8.quantize_per_tensor(x, torch.ones(1, device=DEVICE))
    assert q.tolist() == [[-128, 127, -127, 1]]  # NaN -> the -128 marker, Inf saturates


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1), (17, 1000), (256, 64), (3, 33)])
def test_quantize_per_token_exact(dtype, shape):
    x = (torch.randn(*shape, device=DEVICE) * 3).to(dtype)
    q, s = k8.quantize_per_token(x)
    rq, rs = ref_quant_token(x)
    assert q.dtype == torch.int8 and q.is_contiguous() and s.dtype == torch.float32 and s.shape == (shape[0],)
    assert torch.equal(s, rs)
    assert torch.equal(q, rq)


def test_quantize_per_token_non_contiguous_and_two_sweeps(monkeypatch):
    base = torch.randn(1001, 40, device=DEVICE)
    views = [base.t(), base[::3, ::2], torch.randn(30, 2002, device=DEVICE)[:, ::2]]
    for max_bk in (4096, 64):  # 64: rows longer than a tile take the max sweep + quantise sweep
        monkeypatch.setattr(k8, "_QUANT_MAX_BLOCK_K", max_bk)
        for x in views:
            q, s = k8.quantize_per_token(x)
            rq, rs = ref_quant_token(x)
            assert torch.equal(s, rs) and torch.equal(q, rq)


def test_quantize_per_token_ties_zero_rows_and_dequant():
    row_ties = torch.tensor([127.0, 0.5, 1.5, 2.5, -2.5, -0.5, 126.5, -3.5])  # scale 1: exact halves
    x = torch.stack([row_ties, torch.zeros(8), row_ties * 0.25]).to(DEVICE)
    q, s = k8.quantize_per_token(x)
    assert q[0].tolist() == [127, 0, 2, 2, -2, 0, 126, -4]
    assert s[0].item() == 1.0 and torch.equal(q[2], q[0])
    assert s[1].item() == torch.tensor(1.0 / 127.0, dtype=torch.float32).item()
    assert torch.equal(q[1], torch.zeros_like(q[1]))
    xr = torch.randn(64, 300, device=DEVICE)
    q, s = k8.quantize_per_token(xr)
    assert ((q.float() * s[:, None] - xr).abs() <= s[:, None] * 0.5 * (1 + 1e-6)).all()


@pytest.mark.parametrize("max_bk", [4096, 64])
def test_quantize_per_token_nonfinite_rows(monkeypatch, max_bk):
    monkeypatch.setattr(k8, "_QUANT_MAX_BLOCK_K", max_bk)
    x = torch.randn(5, 200, device=DEVICE)
    x[1, 150] = float("nan")
    x[3, 7] = float("inf")
    x[4, 199] = -float("inf")
    q, s = k8.quantize_per_token(x)
    assert s[[1, 3, 4]].isnan().all() and s[[0, 2]].isfinite().all()
    assert (q[[1, 3, 4]] == -128).all()
    rq, rs = ref_quant_token(x[[0, 2]])
    assert torch.equal(q[[0, 2]], rq) and torch.equal(s[[0, 2]], rs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_quantize_per_tensor_exact(dtype):
    for x in [torch.randn(17, 1000, device=DEVICE), torch.randn(77, 64, device=DEVICE).t()[:, ::3]]:
        x = (x * 2).to(dtype)
        scale = torch.tensor([0.013], device=DEVICE)
        q = k8.quantize_per_tensor(x, scale)
        assert q.is_contiguous() and torch.equal(q, ref_quant(x.float(), scale))


# ---------------------------------------------------------------- int8 GEMM
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (17, 1000, 29), (256, 67, 33), (5, 31, 1)])
def test_int32_accumulator_exact(m, k, n):
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=DEVICE)
    wq = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=DEVICE)
    ones_m, ones_n = torch.ones(m, device=DEVICE), torch.ones(n, device=DEVICE)
    acc = run(xq, ones_m, wq, ones_n, None, out_dtype=torch.int32)
    assert acc.dtype == torch.int32 and acc.shape == (m, n)
    assert torch.equal(acc, ref_acc(xq, wq))


def test_interpreter_int8_dot_fallback(monkeypatch):
    """The int8 tl.dot path is the one tested where the interpreter has it; the fp32 fallback is exact too."""
    import triton
    if k8.INTERPRET and tuple(int(p) for p in triton.__version__.split(".")[:2]) >= (3, 9):
        assert not k8._int8_dot_via_f32()
    monkeypatch.setattr(k8, "_int8_dot_via_f32", lambda: True)
    if not k8.INTERPRET:
        pytest.skip("the fallback exists for the interpreter only")
    xq = torch.full((20, 300), -128, dtype=torch.int8)
    xq[::3] = torch.randint(-127, 128, (7, 300), dtype=torch.int8)
    wq = torch.randint(-128, 128, (33, 300), dtype=torch.int8)
    acc = run(xq, torch.ones(1), wq, torch.ones(33), None, out_dtype=torch.int32)
    assert torch.equal(acc, ref_acc(xq, wq))


def test_int32_extremes_and_strided_operands():
    k = 2000  # |acc| up to 2000 * 128 * 128 = 32.8M > 2**24: beyond fp32-exact, must stay exact
    xq = torch.full((3, k), -128, dtype=torch.int8, device=DEVICE)
    xq[1] = 127
    xq[2, ::2] = -127
    wq_t = torch.full((k, 20), -128, dtype=torch.int8, device=DEVICE)  # wq as a transposed view
    wq_t[:, 1] = 127
    one = torch.ones(1, device=DEVICE)
    acc = run(xq, one, wq_t.t(), torch.ones(20, device=DEVICE), None, out_dtype=torch.int32)
    assert torch.equal(acc, ref_acc(xq, wq_t.t()))
    assert acc[0, 0].item() == k * 128 * 128
    xs = torch.randint(-127, 128, (40, 90), dtype=torch.int8, device=DEVICE)[::2, ::3]  # [20, 30]
    ws = torch.randint(-127, 128, (30, 11), dtype=torch.int8, device=DEVICE).t()       # [11, 30]
    acc = run(xs, one, ws, torch.ones(11, device=DEVICE), None, out_dtype=torch.int32)
    assert torch.equal(acc, ref_acc(xs, ws))


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("per_token", [True, False])
@pytest.mark.parametrize("has_bias", [True, False])
def test_float_epilogue(out_dtype, act, per_token, has_bias):
    xq, xs, wq, ws, bias = make_operands(17, 45, 19, per_token)
    bias = bias if has_bias else None
    y = run(xq, xs, wq, ws, bias, act, out_dtype)
    assert y.dtype == out_dtype and y.shape == (17, 19) and y.is_contiguous()
    ref = ref_epilogue(ref_acc(xq, wq), xs, ws, bias, act)
    testing.assert_close(y, ref.to(out_dtype))


def assert_requant_close(q, y_ref, out_scale):
    """Equal to the reference except by 1 where y / out_scale is within fp32 noise of a .5 tie."""
    v = y_ref / out_scale
    rq = ref_quant(y_ref, out_scale)
    diff = (q.long() - rq.long()).abs()
    assert diff.max().item() <= 1
    frac = (v - v.floor() - 0.5).abs()
    at_tie = frac <= 1e-4 * v.abs().clamp_min(1.0)
    assert bool((at_tie | (diff == 0)).all()), "int8 output differs from the reference away from a tie"


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("per_token", [True, False])
def test_int8_requantised_output(act, per_token):
    xq, xs, wq, ws, bias = make_operands(17, 77, 23, per_token)
    ref = ref_epilogue(ref_acc(xq, wq), xs, ws, bias, act)
    out_scale = (ref.abs().max() / 150).reshape(1)  # some outputs saturate at +-127
    q = run(xq, xs, wq, ws, bias, act, torch.int8, out_scale)
    assert q.dtype == torch.int8 and q.shape == (17, 23)
    assert_requant_close(q, ref, out_scale)
    assert q.max().item() == 127 or act == 4


def test_int8_output_ties_and_nan_marker():
    # acc = xq @ wq.T with unit scales: acc / 2 puts every odd accumulator exactly on a tie.
    xq = torch.arange(-60, 60, dtype=torch.int8, device=DEVICE).reshape(120, 1)
    wq = torch.ones(3, 1, dtype=torch.int8, device=DEVICE)
    one = torch.ones(1, device=DEVICE)
    q = run(xq, one, wq, torch.ones(3, device=DEVICE), None, 0, torch.int8, torch.tensor([2.0], device=DEVICE))
    assert torch.equal(q[:, 0], torch.round(xq[:, 0].float() / 2).to(torch.int8))
    bias = torch.tensor([float("nan"), 0.0, 0.0], device=DEVICE)
    q = run(xq, one, wq, torch.ones(3, device=DEVICE), bias, 0, torch.int8, one)
    assert (q[:, 0] == -128).all() and torch.equal(q[:, 1], xq[:, 0])


@pytest.mark.parametrize("m", [1, 17, 256])
def test_batch_sizes_odd_k_n(m):
    xq, xs, wq, ws, bias = make_operands(m, 129, 45)
    ref = ref_epilogue(ref_acc(xq, wq), xs, ws, bias, 2)
    testing.assert_close(run(xq, xs, wq, ws, bias, 2, torch.float32), ref)
    out_scale = (ref.abs().max() / 127).reshape(1)
    assert_requant_close(run(xq, xs, wq, ws, bias, 2, torch.int8, out_scale), ref, out_scale)


def test_quantise_then_gemm_matches_float_linear():
    """End to end: per-token x, per-channel w, bf16 output close to the float layer's output."""
    x = torch.randn(64, 512, device=DEVICE)
    w = (torch.rand(96, 512, device=DEVICE) * 2 - 1) / 512 ** 0.5
    xq, xs = k8.quantize_per_token(x)
    wq, ws = k8.quantize_per_token(w)
    y = run(xq, xs, wq, ws, None, 3, torch.bfloat16)
    torch.testing.assert_close(y.float(), torch.tanh(x @ w.T), atol=0.03, rtol=0.03)


def test_empty_and_errors():
    one = torch.ones(1, device=DEVICE)
    xq = torch.zeros(0, 8, dtype=torch.int8, device=DEVICE)
    wq = torch.zeros(4, 8, dtype=torch.int8, device=DEVICE)
    assert run(xq, one, wq, torch.ones(4, device=DEVICE), None).shape == (0, 4)
    assert k8.quantize_per_token(torch.zeros(0, 5, device=DEVICE))[0].shape == (0, 5)
    xq = torch.zeros(2, 8, dtype=torch.int8, device=DEVICE)
    ws = torch.ones(4, device=DEVICE)
    with pytest.raises(ValueError, match="out_features"):
        k8.int8_linear(xq, one, wq, ws, None, 5, 0, 0.0, torch.float32, None)
    with pytest.raises(TypeError, match="int8"):
        run(xq.float(), one, wq, ws, None)
    with pytest.raises(ValueError, match="out_scale"):
        run(xq, one, wq, ws, None, 0, torch.int8, None)
    with pytest.raises(ValueError, match="x_scale"):
        run(xq, torch.ones(3, device=DEVICE), wq, ws, None)
    with pytest.raises(TypeError, match="out_dtype"):
        run(xq, one, wq, ws, None, 0, torch.float64)
    big = torch.zeros(1, k8.MAX_K + 1, dtype=torch.int8, device=DEVICE)
    with pytest.raises(ValueError, match="overflow"):
        run(big, one, big, one, None)
    with pytest.raises(TypeError, match="float32/float16/bfloat16"):
        k8.quantize_per_token(xq)
    with pytest.raises(ValueError, match="scale"):
        k8.quantize_per_tensor(torch.ones(2, 2, device=DEVICE), torch.ones(2, device=DEVICE))


# ---------------------------------------------------------------- GPU code generation without a GPU
_AOT = r'''
import os, re, sys
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
from fastgan_kernels.triton import int8_linear as k8

def build(fn, types, consts, arch, warps, stages):
    sig = {a: ("constexpr" if a in consts else types.get(a, "i32")) for a in fn.arg_names}
    div16 = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in fn.arg_names
             if a.endswith("_ptr") or a in ("M", "N", "K", "stride_am", "stride_bn", "stride_cm")}
    src = ASTSource(fn, sig, constexprs=consts, attrs=div16)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps, "num_stages": stages})

ptr = {"x_scale_ptr": "*fp32", "w_scale_ptr": "*fp32", "bias_ptr": "*fp32", "out_scale_ptr": "*fp32",
       "a_ptr": "*i8", "b_ptr": "*i8", "negative_slope": "fp32", "x_ptr": "*bf16", "q_ptr": "*i8", "scale_ptr": "*fp32"}
for arch, tile, mma in ((80, (64, 64, 128, 4, 4), "mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32"),
                        (90, (128, 128, 128, 4, 8), "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8")):
    bm, bn, bk, stages, warps = tile
    for kind, out in ((0, "*bf16"), (1, "*i8"), (2, "*i32")) if arch == 90 else ((1, "*i8"),):
        consts = dict(OUT_KIND=kind, X_PER_TOKEN=kind == 0, HAS_BIAS=kind != 2, ACTIVATION=3 * (kind != 2),
                      I8_VIA_F32=False, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8)
        ptx = build(k8._int8_gemm_kernel, {**ptr, "c_ptr": out}, consts, arch, warps, stages).asm["ptx"]
        assert mma in ptx, (arch, kind, "int8 tensor-core instruction missing")
        assert (kind == 1) == ("div.rn.f32" in ptx), (arch, kind, "requantisation must divide with div.rn")
    quantisers = ((k8._quantize_per_token_kernel, dict(BLOCK_M=2, BLOCK_K=4096, ONE_TILE=True)),
                  (k8._quantize_per_token_kernel, dict(BLOCK_M=2, BLOCK_K=64, ONE_TILE=False)),
                  (k8._quantize_per_tensor_kernel, dict(BLOCK_M=4, BLOCK_K=1024)))
    for fn, consts in quantisers if arch == 90 else ():
        ptx = build(fn, ptr, consts, arch, 4, 1).asm["ptx"]
        assert "div.rn.f32" in ptx and "div.full.f32" not in ptx and "0f4B400000" in ptx, (fn, consts)
print("AOT-OK")
'''


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU runs the kernels themselves")
def test_gpu_code_generation_without_gpu():
    """Compile every kernel for sm_80 and sm_90 (ptxas runs on the CPU): int8 MMA / wgmma, IEEE division.

    The interpreter does not check what the GPU compiler does (e.g. non-constexpr globals, int8 dot
    minimum tile sizes), so this catches such errors on CPU-only machines.
    """
    import subprocess
    import sys

    import triton
    if tuple(int(p) for p in triton.__version__.split(".")[:2]) < (3, 3):
        pytest.skip("ASTSource signature API of triton >= 3.3")
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip("triton's bundled ptxas is missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    proc = subprocess.run([sys.executable, "-c", _AOT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "AOT-OK" in proc.stdout, proc.stderr[-3000:]

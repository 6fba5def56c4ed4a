"""The C++ CPU kernels of fused linear (csrc/cpu/fused_linear.cpp and the GEMM core in
csrc/cpu/gemm/) against the plain-PyTorch reference, on every CPU code path this machine
can reach: portable, AVX2 fp32, AVX-512 fp32, AVX512-BF16, AMX bf16 under the scalar tile
emulation (and AMX on real tiles where the CPU has them).

Each path is forced with the ISA cap (and the test-only AMX emulation switch), and the
test first checks that the dispatcher really takes that path for the dtype under test.
"""
from __future__ import annotations

import contextlib
import itertools
import math

import pytest
import torch

import fastgan_kernels
from fastgan_kernels import _ext, testing
from fastgan_kernels.ops import reference

from conftest import torch_threads  # noqa: E402

pytestmark = pytest.mark.skipif(not _ext.has_kernel("fused_linear_fwd", "CPU"),
                                reason=_ext.REASON or "the extension has no CPU fused_linear kernel")

ACTS = range(5)  # identity, relu, leaky_relu, tanh, sigmoid
SLOPE = 0.2
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _feature(name: str) -> bool:
    return bool(_ext.cpu_features().get(name, False)) if _ext.AVAILABLE else False


def _max_isa() -> int:
    return int(_ext.max_isa()) if _ext.AVAILABLE else 0


# path name -> (ISA cap, AMX emulation on, whether this machine can run it, dtypes it serves)
PATHS = {
    "portable": ("portable", False, True, DTYPES),
    "avx2_fp32": ("avx2", False, _max_isa() >= _ext.Isa.AVX2, DTYPES),
    # fp32 below AVX-512: ATen sgemm + our epilogue (tests/test_cpu_blas_gemm_path.py too)
    "blas_fp32_epilogue": ("avx2", False, _max_isa() >= _ext.Isa.AVX2, (torch.float32,)),
    "avx512_fp32": ("avx512", False, _max_isa() >= _ext.Isa.AVX512, DTYPES),
    "avx512_bf16": ("avx512_vnni", False, _max_isa() >= _ext.Isa.AVX512_VNNI and _feature("avx512_bf16"),
                    (torch.bfloat16,)),
    "amx_bf16": ("amx", False, _max_isa() >= _ext.Isa.AMX and _feature("amx_bf16"), (torch.bfloat16,)),
    "amx_bf16_emulated": ("amx", True, _max_isa() >= _ext.Isa.AVX512, (torch.bfloat16,)),
}


# Every (path, dtype) the dispatcher can route: the bf16-only paths are not run for fp32/fp16.
PATH_DTYPES = [pytest.param(p, d, id=f"{p}-{str(d).split('.')[-1]}") for p, spec in PATHS.items() for d in spec[3]]
# The production AVX-512 paths, which carry the forward-only kernels (dot products, small batch).
AVX512_PATH_DTYPES = [p for p in PATH_DTYPES if p.values[0] in ("avx512_fp32", "avx512_bf16")]


@contextlib.contextmanager
def on_path(path: str, dtype: torch.dtype):
    cap, emulate, runnable, dtypes = PATHS[path]
    if not runnable:
        pytest.skip(f"this CPU cannot run the {path} path")
    if dtype not in dtypes:
        pytest.skip(f"the {path} path does not serve {dtype}")
    # the vendor-GEMM path is on by default; forcing it off keeps the AVX2 kernel tested
    with _ext.cpu_isa(cap), _ext.amx_emulation(emulate), _ext.blas_gemm(path == "blas_fp32_epilogue"):
        assert _ext.cpu_gemm_path(dtype) == path
        yield


def make(m: int, k: int, n: int, dtype: torch.dtype, seed: int = 0):
    """x, weight, bias scaled like nn.Linear (outputs of order 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    bound = 1 / math.sqrt(k)
    w = ((torch.rand(n, k, generator=g) * 2 - 1) * bound).to(dtype)
    b = ((torch.rand(n, generator=g) * 2 - 1) * bound).to(dtype)
    return x, w, b


def strided(t: torch.Tensor, layout: str) -> torch.Tensor:
    """The same values as t in another memory layout."""
    if layout == "contiguous":
        return t
    if layout == "transposed":  # column-major storage
        return t.t().contiguous().t()
    if layout == "sliced":  # every 2nd row and 3rd column of a bigger buffer
        big = torch.zeros(t.shape[0] * 2, t.shape[1] * 3, dtype=t.dtype)
        big[::2, ::3] = t
        return big[::2, ::3]
    raise ValueError(layout)


def check_forward(x, w, b, act, xref=None, wref=None):
    y = torch.ops.fastgan_ext.fused_linear_fwd(x, w, b, act, SLOPE)
    expected = reference.fused_linear(x if xref is None else xref, w if wref is None else wref, b, act, SLOPE)
    assert y.shape == expected.shape and y.dtype == expected.dtype and y.is_contiguous()
    testing.assert_close(y, expected)
    return expected


def check_backward(x, w, y, act, needs=(True, True, True), g=None, seed=1):
    m, n = x.shape[0], w.shape[0]
    if g is None:
        g = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).to(x.dtype)
    got = torch.ops.fastgan_ext.fused_linear_bwd(g, y if act else g, x, w, act, SLOPE, *needs)
    exp = reference.fused_linear_backward(g, y if act else None, x, w, act, SLOPE, *needs)
    for name, a, e, need in zip(("grad_x", "grad_weight", "grad_bias"), got, exp, needs):
        if not need:
            assert a is None, f"{name} was not requested but came back"
            continue
        assert a is not None and a.shape == e.shape and a.dtype == e.dtype, name
        testing.assert_close(a, e, backward=True, msg=lambda s, name=name: f"{name}: {s}")


# --- forward --------------------------------------------------------------------------

# (M, K, N): every M in {1, 17, 64, 1000}, odd K and N in {1, 3, 17, 33, 100, 1000}, ragged
# against the 8 x 48 / 32 x 32 micro-tiles and the k units (1, 2, 32).
# 33 <= M <= 64 takes the small-batch weight-broadcast kernels on the AVX-512 paths
# (csrc/cpu/gemm/small_m_avx512.h): ragged against their 6-row tiles, odd K for the pairs.
SHAPES = [(1, 1, 1), (1, 1000, 3), (17, 33, 17), (17, 3, 100), (64, 100, 33), (64, 17, 1000),
          (1000, 33, 3), (1000, 100, 17), (64, 1000, 100), (3, 33, 1000), (33, 17, 100), (50, 33, 7),
          (64, 1, 5), (48, 3, 6)]
SMALL_SHAPES = [(1, 1, 1), (17, 33, 17), (64, 100, 33), (3, 17, 100)]  # for the AMX emulation


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_forward_every_shape_and_activation(path, dtype):
    shapes = SMALL_SHAPES if path == "amx_bf16_emulated" else SHAPES
    with on_path(path, dtype):
        for (m, k, n), act in itertools.product(shapes, ACTS):
            x, w, b = make(m, k, n, dtype, seed=m + k + n)
            check_forward(x, w, b if act % 2 == 0 else None, act)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
@pytest.mark.parametrize("x_layout", ["contiguous", "transposed", "sliced"])
@pytest.mark.parametrize("w_layout", ["contiguous", "transposed", "sliced"])
def test_forward_strided_operands(path, dtype, x_layout, w_layout):
    with on_path(path, dtype):
        for m, k, n in [(17, 33, 100), (64, 100, 33)]:
            x, w, b = make(m, k, n, dtype)
            check_forward(strided(x, x_layout), strided(w, w_layout), b, 2, xref=x, wref=w)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_forward_more_columns_than_a_block(path, dtype):
    # N beyond the column block (NC = 2048; 1024 on AMX): several jc blocks per thread.
    m, k, n = (3, 40, 1100) if path == "amx_bf16_emulated" else (9, 40, 4200)
    with on_path(path, dtype):
        x, w, b = make(m, k, n, dtype)
        check_forward(x, w, b, 3)
        check_backward(x, w, reference.fused_linear(x, w, b, 3, SLOPE), 3)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_k_longer_than_a_block(path, dtype):
    # K beyond the k block (256 .. 4096 depending on path and dtype): fp32 partial sums in
    # C, or in scratch for 16-bit outputs, across several k blocks; a strided bias too.
    shapes = [(3, 600, 20)] if path == "amx_bf16_emulated" else [(9, 4200, 40), (40, 4200, 13), (64, 4200, 100)]
    with on_path(path, dtype):
        for m, k, n in shapes:
            x, w, b = make(m, k, n, dtype)
            bias = torch.zeros(2 * n, dtype=dtype)
            bias[::2] = b
            check_forward(x, w, bias[::2], 4)
            check_backward(x, w, reference.fused_linear(x, w, b, 4, SLOPE), 4)


@pytest.mark.parametrize("path", list(PATHS))
def test_activation_accuracy_and_nan(path):
    # Pre-activations over a wide range (incl. around the tanh series switch at 0.5 and the
    # exp clamps), through an identity weight so z is exactly x.
    dtype = torch.bfloat16 if path.startswith("amx") or path == "avx512_bf16" else torch.float32
    with on_path(path, dtype):
        z = torch.cat([torch.linspace(-120, 120, 2401), torch.linspace(-0.7, 0.7, 1401),
                       torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-6, 0.49999, 0.5, 0.50001])])
        z = z[: (z.numel() // 16) * 16].reshape(-1, 16).to(dtype)
        eye = torch.eye(16, dtype=dtype)
        for act in ACTS:
            check_forward(z, eye, None, act)
        z[3, 5] = float("nan")
        for act in ACTS:
            y = torch.ops.fastgan_ext.fused_linear_fwd(z, eye, None, act, SLOPE)
            assert torch.isnan(y[3]).all(), f"activation {act} lost a NaN"  # NaN * 0 is NaN
            assert torch.isfinite(y[:3]).all() and torch.isfinite(y[4:]).all()


def test_thread_counts_and_partitions():
    for threads in (1, 2, 3):
        with torch_threads(threads):
            for dtype in DTYPES:
                for m, k, n in [(1000, 64, 40), (40, 64, 1000), (130, 257, 129)]:
                    x, w, b = make(m, k, n, dtype)
                    check_forward(x, w, b, 2)


# --- backward -------------------------------------------------------------------------

BWD_SHAPES = [(1, 3, 17), (17, 33, 100), (64, 100, 33), (1000, 17, 3)]


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_backward_every_activation(path, dtype):
    shapes = BWD_SHAPES[:3] if path == "amx_bf16_emulated" else BWD_SHAPES
    with on_path(path, dtype):
        for (m, k, n), act in itertools.product(shapes, ACTS):
            x, w, b = make(m, k, n, dtype, seed=m * k)
            y = reference.fused_linear(x, w, b, act, SLOPE)
            check_backward(x, w, y, act)


@pytest.mark.parametrize("needs", list(itertools.product([False, True], repeat=3)), ids=str)
def test_backward_need_combinations(needs):
    for dtype in DTYPES:
        x, w, b = make(17, 33, 100, dtype)
        for act in (0, 3):
            check_backward(x, w, reference.fused_linear(x, w, b, act, SLOPE), act, needs)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_backward_strided_operands(path, dtype):
    with on_path(path, dtype):
        m, k, n = 17, 33, 100
        x, w, b = make(m, k, n, dtype)
        y = reference.fused_linear(x, w, b, 3, SLOPE)
        g = torch.randn(m, n).to(dtype)
        for lx, lw, lg in [("transposed", "sliced", "transposed"), ("sliced", "transposed", "sliced")]:
            got = torch.ops.fastgan_ext.fused_linear_bwd(strided(g, lg), strided(y, lg), strided(x, lx),
                                                         strided(w, lw), 3, SLOPE, True, True, True)
            exp = reference.fused_linear_backward(g, y, x, w, 3, SLOPE, True, True, True)
            for a, e in zip(got, exp):
                testing.assert_close(a, e, backward=True)
        # grad_out of y.sum(): a zero-stride expanded tensor
        ones = torch.ones(1, 1, dtype=dtype).expand(m, n)
        check_backward(x, w, y, 4, g=ones)


# --- the public op through autograd ------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activation", ["identity", "relu", "leaky_relu", "tanh", "sigmoid"])
def test_public_op_autograd_matches_reference(dtype, activation):
    x0, w0, b0 = make(2 * 32, 100, 33, dtype)
    results = []
    for backend in ("cpu_ext", "reference"):
        x = x0.reshape(2, 32, 100).clone().requires_grad_()
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        y = fastgan_kernels.fused_linear(x, w, b, activation, SLOPE, backend=backend)
        (y.float() * torch.linspace(-1, 1, 33)).sum().backward()
        results.append((y.detach(), x.grad, w.grad, b.grad))
    (y, gx, gw, gb), (ry, rgx, rgw, rgb) = results
    testing.assert_close(y, ry)
    for a, e in ((gx, rgx), (gw, rgw), (gb, rgb)):
        testing.assert_close(a, e, backward=True)


def test_path_selection_follows_the_cap():
    with _ext.cpu_isa("portable"):
        assert {_ext.cpu_gemm_path(d) for d in DTYPES} == {"portable"}
        with _ext.amx_emulation() as emulated:  # needs AVX-512 for its packing: not here
            assert not emulated and _ext.cpu_gemm_path(torch.bfloat16) == "portable"
    if _max_isa() >= _ext.Isa.AVX2:
        with _ext.cpu_isa("avx2"):
            assert _ext.cpu_gemm_path(torch.float32) == "blas_fp32_epilogue"
            assert {_ext.cpu_gemm_path(d) for d in DTYPES[1:]} == {"avx2_fp32"}
            with _ext.blas_gemm(False):
                assert {_ext.cpu_gemm_path(d) for d in DTYPES} == {"avx2_fp32"}
    if _max_isa() >= _ext.Isa.AVX512:
        with _ext.cpu_isa("avx512"):
            assert {_ext.cpu_gemm_path(d) for d in DTYPES} == {"avx512_fp32"}
        with _ext.cpu_isa("avx512_vnni"):
            assert _ext.cpu_gemm_path(torch.float16) == "avx512_fp32"
            expected = "avx512_bf16" if _feature("avx512_bf16") else "avx512_fp32"
            assert _ext.cpu_gemm_path(torch.bfloat16) == expected
        with _ext.amx_emulation() as emulated:
            assert emulated and _ext.cpu_gemm_path(torch.float32) == "avx512_fp32"
    assert not torch.ops.fastgan_ext.set_amx_emulation(False)  # every block restored it


def test_kernels_run_on_torchs_openmp_team():
    # setup.py builds without -fopenmp, where at::parallel_for is serial; the kernels must
    # still reach torch's OpenMP threads (csrc/cpu/parallel.h).
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("torch was built without OpenMP")
    assert torch.ops.fastgan_ext.cpu_parallel_backend() in ("openmp", "gomp")


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16), ids=str)
def test_partial_sums_of_many_rows_and_columns(dtype):
    # 16-bit outputs keep fp32 partial sums in per-thread scratch, taken in chunks of
    # 1024 rows (general path) or 8190 columns (batch 33..64 path) when K spans blocks.
    for m, k, n in [(2100, 2100, 20), (40, 4200, 8200)]:
        x, w, b = make(m, k, n, dtype)
        check_forward(x, w, b, 3)


@pytest.mark.parametrize("path,dtype", AVX512_PATH_DTYPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_forward_dot_products(path, dtype, threads):
    # N <= 4 or M <= 4 forward takes the dot-product kernel (csrc/cpu/gemm/dot_avx512.h): ragged
    # against its 4-row tiles and 16-lane k steps, both orientations (a logit layer, a batch of
    # 1..4), x and W rows strided in bigger buffers, split over threads; a non-unit k stride
    # falls back to the packed GEMM.
    with torch_threads(threads), on_path(path, dtype):
        shapes = [(1, 1, 1), (3, 15, 2), (5, 16, 4), (17, 17, 3), (1000, 300, 1), (130, 257, 4),
                  (1, 100, 256), (2, 33, 17), (3, 257, 130), (4, 16, 1000)]
        for (m, k, n), act in itertools.product(shapes, ACTS):
            x, w, b = make(m, k, n, dtype, seed=m * k + n)
            check_forward(x, w, b if act != 3 else None, act)
            wide_x = torch.zeros(m, k + 7, dtype=dtype)
            wide_x[:, 3:k + 3] = x
            wide_w = torch.zeros(n, k + 5, dtype=dtype)
            wide_w[:, 1:k + 1] = w
            check_forward(wide_x[:, 3:k + 3], wide_w[:, 1:k + 1], b, act, xref=x, wref=w)  # row strides
            check_forward(strided(x, "sliced"), w, b, act, xref=x)       # k stride 3: the GEMM
            check_forward(x, strided(w, "transposed"), b, act, wref=w)   # W column-major: the GEMM


@pytest.mark.parametrize("path,dtype", AVX512_PATH_DTYPES)
def test_small_batch_forward_on_two_threads(path, dtype):
    # Batch 33..64 takes the weight-broadcast kernel (gemm/small_m_avx512.h): threads split N,
    # tiles stage 48 columns before the 16 x 16 transposes write C; ragged groups, rows and
    # blocks in every dtype (fp32 / bf16 / fp16 outputs).
    with torch_threads(2), on_path(path, dtype):
        for (m, k, n), act in itertools.product([(33, 7, 47), (47, 64, 49), (64, 130, 200), (64, 5, 1001)], ACTS):
            x, w, b = make(m, k, n, dtype, seed=m + n)
            check_forward(x, w, b if act != 1 else None, act)

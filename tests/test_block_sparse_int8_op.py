"""fastgan::block_sparse_int8_linear on every backend that runs here, against the int8 reference on the
pruned dense weight: exact int32 accumulator, the epilogue (each activation, float and int8 out),
static and dynamic activation scales, ragged blocks, empty block rows, an all-zero layer,
non-contiguous x; the C++ CPU kernel also on each CPU code path and with 1 and 2 threads."""
import contextlib

import pytest
import torch

from fastgan_kernels import _ext, activations, testing
from fastgan_kernels.nn.block_sparse_linear import keep_strongest
from fastgan_kernels.ops import block_sparse_int8_linear as bsi
from fastgan_kernels.ops import bsr
from fastgan_kernels.ops import int8_linear as q8

from conftest import backend_params, torch_threads

BACKENDS = backend_params("bsr_int8_linear_fwd")
SLOPE = 0.2


def layer(n, k, block=(32, 32), sparsity=0.75, empty_rows=(), device="cpu"):
    """(int8 BsrWeight, w_scale, bias, the int8 dense weight) with the strongest blocks kept."""
    w = (torch.rand(n, k) * 2 - 1) / k ** 0.5
    mask = keep_strongest(bsr.block_norms(w, block), sparsity) if sparsity is not None else \
        torch.zeros(bsr.grid((n, k), block), dtype=torch.bool)
    for r in empty_rows:
        mask[r] = False
    wq, ws = bsi.quantize_bsr_weight(bsr.BsrWeight.from_dense(w, block, mask))
    bias = (torch.rand(n) * 2 - 1) / k ** 0.5
    return wq.to(device), ws.to(device), bias.to(device), wq.to_dense().to(device)


def reference(x, x_scale, dense_q, ws, bias, act, out_dtype=torch.float32, out_scale=None):
    if x.dtype != torch.int8:
        x, x_scale = (q8.reference_quantize_per_token(x) if x_scale is None
                      else (q8.reference_quantize_per_tensor(x, x_scale), x_scale))
    return q8.reference_int8_linear(x.reshape(-1, x.shape[-1]), x_scale.reshape(-1), dense_q, ws, bias,
                                    activations.check_activation(act, SLOPE), SLOPE, out_dtype, out_scale)


def run(x, w, ws, bias, backend, **kw):
    return bsi.block_sparse_int8_linear(x, w, ws, bias, w_packed=bsi.pack_weight(w, backend), backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m, k, n, block", [(1, 32, 32, 32), (17, 100, 70, (16, 32)), (64, 256, 96, (32, 16)),
                                            (33, 130, 200, (64, 64))])
def test_int32_accumulator_is_exact(backend, m, k, n, block):
    name, device = backend
    w, ws, _, dense_q = layer(n, k, block, 0.6, device=device)
    xq = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
    acc = run(xq, w, ws, None, name, x_scale=torch.ones(1, device=device), out_dtype=torch.int32)
    assert torch.equal(acc.cpu().long(), xq.cpu().long() @ dense_q.cpu().long().t())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", activations.NAMES)
@pytest.mark.parametrize("quant", ["dynamic", "static", "int8_token"])
def test_epilogue_matches_reference(backend, act, quant):
    name, device = backend
    w, ws, bias, dense_q = layer(70, 100, (32, 32), 0.7, empty_rows=(1,), device=device)
    x = torch.randn(17, 100, device=device)
    x_scale = None
    if quant == "static":
        x_scale = (x.abs().max() / 127).reshape(1)
    elif quant == "int8_token":
        x, x_scale = q8.reference_quantize_per_token(x)
    for out_dtype in (torch.float32, torch.bfloat16):
        y = run(x, w, ws, bias, name, x_scale=x_scale, activation=act, negative_slope=SLOPE, out_dtype=out_dtype)
        assert y.dtype == out_dtype and y.shape == (17, 70)
        testing.assert_close(y, reference(x, x_scale, dense_q, ws, bias, act, out_dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_output_and_empty_rows_give_act_bias(backend):
    name, device = backend
    w, ws, bias, dense_q = layer(96, 64, (32, 32), 0.5, empty_rows=(0, 2), device=device)
    x = torch.randn(9, 64, device=device)
    out_scale = torch.tensor([0.02], device=device)
    y = run(x, w, ws, bias, name, activation="leaky_relu", negative_slope=SLOPE, out_dtype=torch.int8,
            out_scale=out_scale)
    ref = reference(x, None, dense_q, ws, bias, "leaky_relu", torch.int8, out_scale)
    assert y.dtype == torch.int8
    assert (y.cpu().int() - ref.cpu().int()).abs().max() <= 1  # a rounding tie at most
    yf = run(x, w, ws, bias, name, activation="tanh")
    empty = torch.cat([torch.arange(0, 32), torch.arange(64, 96)])
    testing.assert_close(yf[:, empty], torch.tanh(bias[empty]).expand(9, -1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_layer_and_non_contiguous_3d_x(backend):
    name, device = backend
    w, ws, bias, _ = layer(40, 48, (16, 16), None, device=device)
    assert w.nnz_blocks == 0
    x = torch.randn(3, 48, 5, device=device).transpose(1, 2)  # [3, 5, 48], not contiguous
    y = run(x, w, ws, bias, name, activation="relu")
    assert y.shape == (3, 5, 40)
    testing.assert_close(y, torch.relu(bias).expand(3, 5, -1))
    w2, ws2, bias2, dense_q = layer(40, 48, (16, 16), 0.5, device=device)
    y = run(x, w2, ws2, bias2, name, activation="sigmoid")
    testing.assert_close(y.reshape(15, 40), reference(x.reshape(15, 48), None, dense_q, ws2, bias2, "sigmoid"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_input_raises(backend):
    name, device = backend
    w, ws, bias, _ = layer(32, 32, 32, 0.5, device=device)
    x = torch.randn(4, 32, device=device)
    x[2, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        run(x, w, ws, bias, name)


def test_argument_errors_name_the_argument():
    w, ws, bias, _ = layer(64, 64, 32, 0.5)
    x = torch.randn(4, 64)
    with pytest.raises(TypeError, match="weight must be a BsrWeight"):
        bsi.block_sparse_int8_linear(x, w.to_dense(), ws)
    with pytest.raises(TypeError, match="weight.values must be int8"):
        bsi.block_sparse_int8_linear(x, w.to(torch.float32), ws)
    with pytest.raises(ValueError, match="in_features"):
        bsi.block_sparse_int8_linear(torch.randn(4, 63), w, ws)
    with pytest.raises(ValueError, match="w_scale"):
        bsi.block_sparse_int8_linear(x, w, ws[:3])
    with pytest.raises(ValueError, match="x_scale"):
        bsi.block_sparse_int8_linear(x, w, ws, x_scale=torch.ones(4))  # a float x takes one static scale
    with pytest.raises(ValueError, match="needs its x_scale"):
        bsi.block_sparse_int8_linear(x.to(torch.int8), w, ws)
    with pytest.raises(TypeError, match="out_scale"):
        bsi.block_sparse_int8_linear(x, w, ws, out_dtype=torch.int8)
    with pytest.raises(ValueError, match="activation"):
        bsi.block_sparse_int8_linear(x, w, ws, activation="softplus")
    empty = bsi.block_sparse_int8_linear(torch.randn(0, 64), w, ws)  # an empty batch is not an error (nn.Linear)
    assert empty.shape == (0, w.shape[0]) and empty.dtype == torch.float32
    with pytest.raises(ValueError, match="backend"):
        bsi.block_sparse_int8_linear(x, w, ws, backend="gpu")
    bad = bsr.BsrWeight.__new__(bsr.BsrWeight)
    bad.values, bad.row_ptr, bad.col_idx, bad.shape = w.values, w.row_ptr, w.col_idx.flip(0), w.shape
    with pytest.raises(ValueError, match="col_idx"):
        bsi.block_sparse_int8_linear(x, bad, ws)


def test_compile_traces_one_op():
    w, ws, bias, dense_q = layer(64, 64, 32, 0.5)
    x = torch.randn(8, 64)

    def f(x):
        return bsi.block_sparse_int8_linear(x, w, ws, bias, activation="relu", check_indices=False)

    y = torch.compile(f, fullgraph=True, backend="eager")(x)
    testing.assert_close(y, reference(x, None, dense_q, ws, bias, "relu"))


# ---------------------------------------------------------------- the C++ CPU kernel's code paths
# path -> ISA cap; "avx512_vnni_emulated": the VNNI driver (packing, split over threads, block walk,
# indexing) with scalar register tiles (set_bsr_int8_vnni_emulation), runnable on any CPU.
CPU_PATHS = {"portable": "portable", "avx2": "avx2", "avx512_vnni": "avx512_vnni",
             "avx512_vnni_emulated": "portable"}
needs_cpu_ext = pytest.mark.skipif(not _ext.has_kernel("bsr_int8_linear_fwd", "CPU"),
                                   reason=_ext.REASON or "the extension has no CPU bsr_int8_linear kernel")


@contextlib.contextmanager
def cpu_path(path):
    if path == "avx512_vnni" and int(_ext.max_isa()) < _ext.Isa.AVX512_VNNI:
        pytest.skip("this CPU has no AVX512-VNNI")
    if path == "avx2" and int(_ext.max_isa()) < _ext.Isa.AVX2:
        pytest.skip("this CPU has no AVX2")
    emulate = path.endswith("_emulated")
    with _ext.cpu_isa(CPU_PATHS[path]):
        previous = torch.ops.fastgan_ext.set_bsr_int8_vnni_emulation(emulate)
        try:
            assert torch.ops.fastgan_ext.bsr_int8_linear_cpu_path() == path
            yield
        finally:
            torch.ops.fastgan_ext.set_bsr_int8_vnni_emulation(previous)


@needs_cpu_ext
@pytest.mark.parametrize("path", list(CPU_PATHS))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("m, k, n, block", [(1, 100, 70, 32), (17, 64, 48, (16, 64)), (300, 96, 130, (64, 32)),
                                            (600, 256, 200, 32),   # two threads, split by m-tiles
                                            (40, 1000, 1030, 32)])  # two threads, split by block rows
def test_cpu_paths_and_threads(path, threads, m, k, n, block):
    w, ws, bias, dense_q = layer(n, k, block, 0.6, empty_rows=(0,))
    x = torch.randn(m, k)
    xq, xs = q8.reference_quantize_per_token(x)
    with cpu_path(path), torch_threads(threads):
        acc = run(xq, w, ws, None, "cpu_ext", x_scale=xs, out_dtype=torch.int32)
        assert torch.equal(acc.long(), xq.long() @ dense_q.long().t())
        for act in ("identity", "leaky_relu"):  # bit for bit: the reference's fp32 operations, no FMA
            y = run(x, w, ws, bias, "cpu_ext", activation=act, negative_slope=SLOPE)
            assert torch.equal(y, reference(x, None, dense_q, ws, bias, act))
        y = run(x, w, ws, bias, "cpu_ext", activation="tanh", out_dtype=torch.float16)
        testing.assert_close(y, reference(x, None, dense_q, ws, bias, "tanh", torch.float16))


@needs_cpu_ext
def test_cpu_packed_weight_is_checked():
    w, ws, bias, _ = layer(64, 64, 32, 0.5)
    other, _, _, _ = layer(64, 96, 32, 0.5)
    x = torch.randn(4, 64)
    with pytest.raises(ValueError, match="packed for a weight"):
        bsi.block_sparse_int8_linear(x, w, ws, w_packed=bsi.pack_weight(other), backend="cpu_ext")
    with pytest.raises(ValueError, match="blob"):
        bsi.block_sparse_int8_linear(x, w, ws, w_packed=torch.zeros(100, dtype=torch.uint8), backend="cpu_ext")

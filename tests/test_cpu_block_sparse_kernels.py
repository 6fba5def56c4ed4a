"""The C++ CPU kernels of block-sparse linear (csrc/cpu/bsr_linear.cpp, csrc/cpu/bsr/ and
csrc/cpu/bsr_*.cpp) against the masked dense reference, on every CPU code path this machine
can reach: portable, AVX2 fp32 (every dtype), AVX-512 fp32 (also fp16, and bf16 without
AVX512-BF16) and AVX512-BF16. (The AVX2 path's own checks: test_cpu_block_sparse_avx2.py.)

Each path is forced with the ISA cap, and each test first checks that the dispatcher really
takes that path for the dtype under test. The raw ops are called directly
(torch.ops.fastgan_ext.bsr_linear_fwd / _bwd), so nothing in the Python layer hides a bug.
"""
from __future__ import annotations

import contextlib
import itertools

import pytest
import torch

from fastgan_kernels import _ext, testing
from fastgan_kernels.ops import bsr, reference
from fastgan_kernels.ops.block_sparse_linear import _reference_backward

from conftest import torch_threads  # noqa: E402

pytestmark = pytest.mark.skipif(not _ext.has_kernel("bsr_linear_fwd", "CPU"),
                                reason=_ext.REASON or "the extension has no CPU bsr_linear kernel")

SLOPE = 0.2
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCKS = [(bn, bk) for bn in (16, 32, 64) for bk in (16, 32, 64)]
SPARSITIES = (0.0, 0.5, 0.9, 1.0)


def _max_isa() -> int:
    return int(_ext.max_isa()) if _ext.AVAILABLE else 0


def _bf16_feature() -> bool:
    return bool(_ext.cpu_features().get("avx512_bf16", False)) if _ext.AVAILABLE else False


# path name -> (ISA cap, whether this machine can run it, dtypes it serves)
PATHS = {
    "portable": ("portable", True, DTYPES),
    "avx2_fp32": ("avx2", _max_isa() >= _ext.Isa.AVX2, DTYPES),
    "avx512_fp32": ("avx512", _max_isa() >= _ext.Isa.AVX512, DTYPES),
    "avx512_bf16": ("avx512_vnni", _max_isa() >= _ext.Isa.AVX512_VNNI and _bf16_feature(), (torch.bfloat16,)),
}
PATH_DTYPES = [pytest.param(p, d, id=f"{p}-{str(d).split('.')[-1]}") for p, spec in PATHS.items() for d in spec[2]]


def cpu_path(dtype: torch.dtype) -> str:
    return torch.ops.fastgan_ext.bsr_linear_cpu_path(dtype)


@contextlib.contextmanager
def on_path(path: str, dtype: torch.dtype):
    cap, runnable, _ = PATHS[path]
    if not runnable:
        pytest.skip(f"this CPU cannot run the {path} path")
    with _ext.cpu_isa(cap):
        assert cpu_path(dtype) == path
        yield


def make(m, k, n, block, sparsity=0.5, dtype=torch.float32, seed=0, mask=None):
    """x, BsrWeight, bias scaled like nn.Linear (outputs of order 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, k, generator=g).to(dtype)
    w = (torch.rand(n, k, generator=g) * 2 - 1) / k ** 0.5
    b = ((torch.rand(n, generator=g) * 2 - 1) / k ** 0.5).to(dtype)
    if mask is None:
        mask = torch.rand(*bsr.grid((n, k), block), generator=g) >= sparsity
        if sparsity >= 1.0:
            mask[:] = False
    return x, bsr.BsrWeight.from_dense(w.to(dtype), block, mask), b


def forward(x, w, b, act):
    return torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, w.row_ptr, w.col_idx, b, w.shape[0], act, SLOPE)


def check_forward(x, w, b, act, xref=None):
    y = forward(x, w, b, act)
    expected = reference.fused_linear(x if xref is None else xref, w.to_dense(), b, act, SLOPE)
    assert y.shape == expected.shape and y.dtype == expected.dtype and y.is_contiguous()
    testing.assert_close(y, expected)
    return expected


def check_backward(x, w, y, act, needs=(True, True, True), g=None, seed=1, xref=None, gref=None, yref=None):
    m, n = x.shape[0], w.shape[0]
    if g is None:
        g = torch.randn(m, n, generator=torch.Generator().manual_seed(seed)).to(x.dtype)
    t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
    got = torch.ops.fastgan_ext.bsr_linear_bwd(g, y if act else g, x, w.values, w.row_ptr, w.col_idx, *t_index, act,
                                               SLOPE, *needs)
    xr, gr, yr = (x if xref is None else xref), (g if gref is None else gref), (y if yref is None else yref)
    exp = _reference_backward(gr, yr if act else None, xr, w.values, w.row_ptr, w.col_idx, act, SLOPE, *needs)
    for name, a, e, need in zip(("grad_x", "grad_values", "grad_bias"), got, exp, needs):
        if not need:
            assert a is None, f"{name} was not requested but came back"
            continue
        assert a is not None and a.shape == e.shape and a.dtype == e.dtype, name
        testing.assert_close(a, e, backward=True, msg=lambda s, name=name: f"{name}: {s}")


# M in {1, 17, 256} (ragged against the 8-row tiles), odd K and N (ragged against every block)
SHAPES = [(1, 37, 45), (17, 100, 67), (256, 131, 97)]


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_forward_every_block_pair_and_sparsity(path, dtype):
    with on_path(path, dtype):
        for i, (block, sparsity, (m, k, n)) in enumerate(itertools.product(BLOCKS, SPARSITIES, SHAPES)):
            x, w, b = make(m, k, n, block, sparsity, dtype, seed=i)
            check_forward(x, w, b if i % 2 == 0 else None, i % 5)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_backward_every_block_pair_and_sparsity(path, dtype):
    with on_path(path, dtype):
        for i, (block, sparsity) in enumerate(itertools.product(BLOCKS, SPARSITIES)):
            m, k, n = SHAPES[i % 3]
            x, w, b = make(m, k, n, block, sparsity, dtype, seed=i)
            act = i % 5
            y = reference.fused_linear(x, w.to_dense(), b, act, SLOPE)
            check_backward(x, w, y, act, seed=i)


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_all_zero_rows_write_act_bias(path, dtype):
    with on_path(path, dtype):
        x, w, b = make(9, 50, 40, (16, 32), 1.0, dtype)
        assert w.nnz_blocks == 0
        for act in range(5):
            y = forward(x, w, b, act)
            expected = reference.fused_linear(x, w.to_dense(), b, act, SLOPE)
            testing.assert_close(y, expected)
        assert torch.equal(forward(x, w, None, 0), torch.zeros(9, 40, dtype=dtype))
        t_index = bsr.transpose_index(w.row_ptr, w.col_idx, bsr.grid(w.shape, w.block)[1])
        g = torch.randn(9, 40).to(dtype)
        gx, gv, gb = torch.ops.fastgan_ext.bsr_linear_bwd(g, g, x, w.values, w.row_ptr, w.col_idx, *t_index, 0,
                                                          SLOPE, True, True, True)
        assert torch.equal(gx, torch.zeros_like(x)) and gv.shape == (0, 16, 32)
        testing.assert_close(gb, g.float().sum(0).to(dtype), backward=True)


def strided(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "transposed":  # column-major storage
        return t.t().contiguous().t()
    big = torch.zeros(t.shape[0] * 2, t.shape[1] * 3, dtype=t.dtype)  # every 2nd row, 3rd column
    big[::2, ::3] = t
    return big[::2, ::3]


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_non_contiguous_operands(path, dtype, layout):
    with on_path(path, dtype):
        x, w, b = make(17, 100, 67, (32, 16), 0.5, dtype)
        y = check_forward(strided(x, layout), w, b, 2, xref=x)
        g = torch.randn(17, 67).to(dtype)
        check_backward(strided(x, layout), w, strided(y, layout), 3, g=strided(g, layout), xref=x, gref=g, yref=y)
        ones = torch.ones(1, 1, dtype=dtype).expand(17, 67)  # grad_out of y.sum(): zero strides
        check_backward(x, w, y, 4, g=ones)


@pytest.mark.parametrize("needs", list(itertools.product([False, True], repeat=3)), ids=str)
def test_backward_need_combinations(needs):
    paths = [p for p, spec in PATHS.items() if spec[1]]
    for path, dtype in itertools.product(paths, DTYPES):
        if dtype not in PATHS[path][2]:
            continue
        with on_path(path, dtype):
            x, w, b = make(17, 70, 50, (16, 32), 0.5, dtype)
            for act in (0, 3):
                check_backward(x, w, reference.fused_linear(x, w.to_dense(), b, act, SLOPE), act, needs)


def skewed_masks(n_rows: int, n_cols: int) -> dict[str, torch.Tensor]:
    dense_row = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    dense_row[n_rows // 3] = True                     # one dense block row, every other row empty
    dense_col = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    dense_col[:, 1] = True                            # one dense block column (grad_x's skew)
    tail = torch.zeros(n_rows, n_cols, dtype=torch.bool)
    tail[-2:] = True                                  # all the work in the last rows
    tail[0, 0] = True
    return {"dense_row": dense_row, "dense_col": dense_col, "tail": tail}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_skewed_patterns_every_thread_count(threads):
    # The work split cuts block rows (and W.T's block columns) by kept-block count and splits
    # a heavy row along the batch, or (batch >= 256 rows per thread) gives each thread a
    # range of batch rows: results must not depend on where the cuts fall.
    with torch_threads(threads):
        for path, spec in PATHS.items():
            if not spec[1]:
                continue
            dtype = torch.bfloat16 if path == "avx512_bf16" else torch.float32
            with on_path(path, dtype):
                for (m, k, n), block in [((96, 300, 200), (32, 16)), ((40, 130, 330), (16, 64)),
                                         ((520, 100, 130), (32, 32))]:
                    nbr, nbc = bsr.grid((n, k), block)
                    for name, mask in skewed_masks(nbr, nbc).items():
                        x, w, b = make(m, k, n, block, dtype=dtype, mask=mask)
                        y = check_forward(x, w, b, 2)
                        check_backward(x, w, y, 2)
                        again = forward(x, w, b, 2)
                        assert torch.equal(again, forward(x, w, b, 2)), f"{name}: not deterministic"


@pytest.mark.parametrize("path,dtype", PATH_DTYPES)
def test_large_rows_groups_and_chunks(path, dtype):
    # Rows whose kept blocks exceed the L2 group budget (one row per group), many small rows
    # per group with the next group prefetched, K long enough for several m-tile chunks.
    cases = [((24, 2048, 64), (64, 64), 0.0), ((64, 1024, 1024), (32, 32), 0.7), ((256, 4096, 48), (16, 32), 0.5)]
    if path == "portable":
        cases = cases[:2]
    with on_path(path, dtype):
        for (m, k, n), block, sparsity in cases:
            x, w, b = make(m, k, n, block, sparsity, dtype)
            y = check_forward(x, w, b, 2)
            check_backward(x, w, y, 2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_unaligned_values_storage(dtype):
    # fp32 grad_x reads values in place only when 64-byte aligned: a storage offset of one
    # element must take the packing path and give the same answer.
    x, w, b = make(17, 100, 67, (16, 32), 0.5, dtype)
    storage = torch.empty(w.values.numel() + 1, dtype=dtype)
    values = storage[1:].view(w.values.shape)
    values.copy_(w.values)
    shifted = bsr.BsrWeight(values, w.row_ptr, w.col_idx, w.shape)
    y = check_forward(x, shifted, b, 1)
    check_backward(x, shifted, y, 1)


def test_path_selection_follows_the_cap():
    with _ext.cpu_isa("portable"):
        assert {cpu_path(d) for d in DTYPES} == {"portable"}
    if _max_isa() >= _ext.Isa.AVX2:
        with _ext.cpu_isa("avx2"):
            assert {cpu_path(d) for d in DTYPES} == {"avx2_fp32"}
    if _max_isa() >= _ext.Isa.AVX512:
        with _ext.cpu_isa("avx512"):
            assert {cpu_path(d) for d in DTYPES} == {"avx512_fp32"}
        with _ext.cpu_isa("avx512_vnni"):
            assert cpu_path(torch.float16) == cpu_path(torch.float32) == "avx512_fp32"
            assert cpu_path(torch.bfloat16) == ("avx512_bf16" if _bf16_feature() else "avx512_fp32")


def test_bad_structure_is_refused_before_any_kernel_runs():
    x, w, b = make(4, 40, 33, (16, 16), 0.5)
    bad_col = w.col_idx.clone()
    bad_col[0] = 99
    with pytest.raises(RuntimeError, match="indices must be in"):
        torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, w.row_ptr, bad_col, b, 33, 2, SLOPE)
    bad_ptr = w.row_ptr.clone()
    bad_ptr[-1] += 1
    with pytest.raises(RuntimeError, match="pointers must run"):
        torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values, bad_ptr, w.col_idx, b, 33, 2, SLOPE)
    with pytest.raises(RuntimeError, match="block sizes"):
        torch.ops.fastgan_ext.bsr_linear_fwd(x, w.values[:, :8].contiguous(), w.row_ptr, w.col_idx, b, 33, 2, SLOPE)

"""The ahead-of-time GPU compile check (fastgan_kernels/aot) and the resource-based config pruning.

The Triton kernels run in the interpreter here, which says nothing about shared memory or
registers on a GPU. ``python -m fastgan_kernels.aot --subset --check`` compiles, for sm_80 and
sm_90, the largest config the autotuner may still pick of every launch every kernel module
declares (all three ops, forward and backward, every dtype) down to a cubin with Triton's bundled
ptxas, and fails when one does not fit the SM's shared memory, spills registers, or when a
@triton.jit kernel has no declared launch. The full sweep (every config) is ``make gpu-resources``.
"""
import os
import subprocess
import sys

import pytest
import triton
from triton.runtime.jit import MockTensor

import torch

from fastgan_kernels.aot import compile as aot_compile
from fastgan_kernels.triton import _resources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PTXAS = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")


def _gpu_configs(module: str, attr: str):
    """The module's GPU config list (this process imported it under the interpreter: one small config)."""
    code = (f"import os; os.environ.pop('TRITON_INTERPRET', None)\n"
            f"from fastgan_kernels.triton import {module} as m\n"
            f"print([(c.kwargs, c.num_stages, c.num_warps) for c in m.{attr}.configs])")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return [triton.Config(kw, num_stages=s, num_warps=w) for kw, s, w in eval(out.stdout.strip().splitlines()[-1])]


def test_ptxas_log_parser():
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_80'\nptxas info    : Function properties for k\n"
           "    16 bytes stack frame, 12 bytes spill stores, 20 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 464 bytes cmem[0]\n")
    assert aot_compile.parse_ptxas_log(log) == {"regs": 255, "stack": 16, "spill_stores": 12, "spill_loads": 20}
    with pytest.raises(ValueError, match="unrecognised"):
        aot_compile.parse_ptxas_log("nothing here")


@pytest.mark.parametrize("arch", [80, 90])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_pruning_keeps_configs_that_fit(arch, dtype, monkeypatch):
    """The fused GEMM's pruning on a large shape: nothing kept exceeds the arch's shared memory or the
    register budgets (fp32 FMA operands; tensor-core accumulators); enough configs stay to choose from."""
    from fastgan_kernels.triton import fused_linear as fl
    monkeypatch.setattr(fl, "INTERPRET", False)  # prune as on a GPU (the interpreter skips the fp32 rule)
    configs = _gpu_configs("fused_linear", "_forward_gemm")
    t = MockTensor(dtype)
    for prologue in (0, 2):  # forward / gradient kernels (the prologue loads y's tile too)
        args = dict(a_ptr=t, y_ptr=t, b_ptr=t, M=4096, N=4096, K=4096, PROLOGUE=prologue,
                    F32_DOT=dtype == torch.float32)
        with _resources.target_arch(arch):
            kept = fl._prune_configs(configs, args)
        assert len(kept) >= 3, (arch, dtype, prologue, kept)
        for c in kept:
            bm, bn, bk = c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]
            stage = ((1 + (prologue != 0)) * bm * bk + bk * bn) * t.dtype.itemsize
            assert c.num_stages * stage <= _resources.SMEM_PER_BLOCK[arch], c
            if dtype == torch.float32:
                assert (bm * bk + bk * bn + bm * bn) / (32 * c.num_warps) <= _resources.FP32_WORDS_PER_THREAD, c
            elif arch < 90 or prologue:
                assert bm * bn / (32 * c.num_warps) <= _resources.TC_ACC_WORDS_PER_THREAD, c


def test_pruning_budget_follows_the_device_limit():
    """A smaller SM (sm_89: 99 KB) prunes more than sm_90 (227 KB); a budget nothing fits keeps one config."""
    configs = [triton.Config({"X": i}, num_stages=s, num_warps=4) for i, s in enumerate((2, 3, 4))]
    with _resources.target_arch(89):
        assert [c.kwargs["X"] for c in _resources.keep(configs, lambda c: 30_000, _resources.smem_limit(None))] == [0, 1]
    with _resources.target_arch(90):
        assert len(_resources.keep(configs, lambda c: 30_000, _resources.smem_limit(None))) == 3
    assert [c.kwargs["X"] for c in _resources.keep(configs, lambda c: 10**6, 1000)] == [0]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(_PTXAS), reason="triton's bundled ptxas is missing")
def test_gpu_compile_subset_fits_and_does_not_spill(tmp_path):
    """sm_80 + sm_90, every kernel launch of the three ops, its largest kept config: compiles, fits, no spill."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("FASTGAN_AOT_CACHE", str(tmp_path / "aot-cache"))
    proc = subprocess.run([sys.executable, "-m", "fastgan_kernels.aot", "--subset", "--check",
                           "--json", str(tmp_path / "subset.json")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    import json
    rows = json.loads((tmp_path / "subset.json").read_text())
    kernels = {r["kernel"] for r in rows}
    for op in ("fused_linear", "block_sparse_linear", "int8_linear"):  # all three ops compiled
        assert any(k.startswith(op + ".") for k in kernels), (op, kernels)
    assert {r["arch"] for r in rows} == {80, 90}
    assert all("error" not in r and r["spill_stores"] == 0 for r in rows)
    hopper_mma = [r for r in rows if r["arch"] == 90 and r["kernel"] == "fused_linear._forward_gemm"
                  and "float32" not in r["launch"]]
    assert hopper_mma and all(r["wgmma"] for r in hopper_mma), "16-bit GEMMs on sm_90 should use wgmma"

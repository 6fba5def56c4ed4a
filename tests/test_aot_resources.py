"""The ahead-of-time GPU compile check (fastgan_kernels/aot) and the resource-based config pruning.

The Triton kernels run in the interpreter here, which says nothing about shared memory or
registers on a GPU. ``python -m fastgan_kernels.aot --subset --check`` compiles, for sm_80 and
sm_90, the largest config the autotuner may still pick of every launch every kernel module
declares (all three ops, forward and backward, every dtype) down to a cubin with Triton's bundled
ptxas, and fails when one does not fit the SM's shared memory, spills registers, or when a
@triton.jit kernel has no declared launch. The full sweep (every config) is ``make gpu-resources``.
"""
import functools
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
    return [triton.Config(kw, num_stages=s, num_warps=w) for kw, s, w in _gpu_config_tuples(module, attr)]


@functools.lru_cache(maxsize=None)
def _gpu_config_tuples(module: str, attr: str):
    code = (f"import os; os.environ.pop('TRITON_INTERPRET', None)\n"
            f"from fastgan_kernels.triton import {module} as m\n"
            f"print([(c.kwargs, c.num_stages, c.num_warps) for c in m.{attr}.configs])")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True)
    return tuple(eval(out.stdout.strip().splitlines()[-1]))


def test_ptxas_log_parser():
    log = ("ptxas info    : Compiling entry function 'k' for 'sm_80'\nptxas info    : Function properties for k\n"
           "    16 bytes stack frame, 12 bytes spill stores, 20 bytes spill loads\n"
           "ptxas info    : Used 255 registers, used 1 barriers, 464 bytes cmem[0]\n")
    assert aot_compile.parse_ptxas_log(log) == {"regs": 255, "stack": 16, "spill_stores": 12, "spill_loads": 20}
    with pytest.raises(ValueError, match="unrecognised"):
        aot_compile.parse_ptxas_log("nothing here")


@pytest.mark.parametrize("arch", [80, 90, 100])
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
            elif arch not in _resources.WIDE_ACC_ARCHS or prologue:
                assert bm * bn / (32 * c.num_warps) <= _resources.TC_ACC_WORDS_PER_THREAD, c


def test_tensor_core_accumulator_budget_per_arch():
    """128-word accumulators only where the sweep found them spill-free: forward GEMMs on Hopper (wgmma)
    and datacenter Blackwell (tcgen05), not int8 on tcgen05, not mma.sync archs, not with a prologue."""
    budget = {}
    for arch in (80, 89, 90, 100, 120):
        with _resources.target_arch(arch):
            budget[arch] = [_resources.tc_acc_budget(None, prologue=p, int8=i) for p in (False, True)
                            for i in (False, True)]
    limit = _resources.TC_ACC_WORDS_PER_THREAD
    assert budget[90] == [None, None, limit, limit]
    assert budget[100] == [None, limit // 2, limit, limit]
    assert budget[80] == budget[89] == budget[120] == [limit] * 4


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


# ---------------------------------------------------------------------------------------------------
# CUDA C++ (fastgan_kernels/aot/cuda.py, behind `make cuda-check` and `--cuda`)
# ---------------------------------------------------------------------------------------------------
def test_cuda_log_and_ptx_parser():
    """ptxas -v gives registers, spills and static smem; the PTX gives launch bounds and the dynamic
    smem FASTGAN_DYNAMIC_SMEM records, which the occupancy counts."""
    from fastgan_kernels.aot import cuda
    log = ("ptxas info    : Compiling entry function '_Z1kv' for 'sm_80'\n"
           "ptxas info    : Function properties for _Z1kv\n"
           "    8 bytes stack frame, 4 bytes spill stores, 8 bytes spill loads\n"
           "ptxas info    : Used 72 registers, used 1 barriers, 4608 bytes smem, 464 bytes cmem[0]\n"
           "ptxas info    : Compiling entry function '_Z1kv' for 'sm_90'\n"
           "ptxas info    : Function properties for _Z1kv\n"
           "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 128 registers, used 1 barriers, 464 bytes cmem[0]\n")
    ptx = cuda.parse_ptx(".visible .entry _Z1kv(\n.maxntid 256, 1, 1\n{\n\t// begin inline asm\n"
                         "\t// fastgan dynamic smem: 61440 bytes\n\t// end inline asm\n}\n")
    assert ptx["_Z1kv"].threads == 256 and ptx["_Z1kv"].dynamic_smem == 61440
    k80, k90 = cuda.parse(log, {("_Z1kv", 80): cuda.PtxEntry(64), ("_Z1kv", 90): ptx["_Z1kv"]}, "x.cu")
    assert (k80.name, k80.regs, k80.spill_stores, k80.spill_loads, k80.smem) == ("k()", 72, 4, 8, 4608)
    assert k80.blocks_per_sm() == 14 and not k90.spills
    # 128 regs x 256 threads: 2 blocks by registers; 60 KB of dynamic smem: 3 by shared memory.
    assert k90.blocks_per_sm() == 2 and k90.occupancy() == 0.25
    k90.dynamic_smem = 100_000
    assert k90.blocks_per_sm() == 2  # 232,448 // 100,000
    k90.dynamic_smem = 200_000
    assert k90.blocks_per_sm() == 1
    assert len(cuda.problems([k80, k90])) == 1 and "spills 4/8 B" in cuda.problems([k80, k90])[0]


_KERNELS_CU = r"""
#include "cuda/common.cuh"
// A kernel with a dynamic buffer, and one forced to spill: 1024 threads x 2 blocks caps it at 32
// registers while 64 accumulators stay live across the loop.
__global__ void __launch_bounds__(128) dyn_kernel(float* out) {
  extern __shared__ float buf[];
  FASTGAN_DYNAMIC_SMEM(12345);
  buf[threadIdx.x] = out[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = fastgan::cuda::activation_forward(buf[127 - threadIdx.x], fastgan::cuda::kSilu, 0.f);
}
__global__ void __launch_bounds__(1024, 2) spill_kernel(const float* in, float* out, int n) {
  float acc[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = in[i * blockDim.x + threadIdx.x];
  for (int k = 0; k < n; ++k)
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = fmaf(acc[i], acc[(i + k) & 63], in[k]);
#pragma unroll
  for (int i = 0; i < 64; ++i) out[i * blockDim.x + threadIdx.x] = acc[i];
}
"""


@pytest.mark.skipif(__import__("shutil").which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_resources_of_a_real_compile(tmp_path):
    """One small source through the same nvcc flags as csrc/cuda: the dynamic smem line reaches the
    table, and a kernel that spills is named by problems() (what makes `make cuda-check` fail)."""
    from fastgan_kernels.aot import cuda
    src = tmp_path / "probe.cu"
    src.write_text(_KERNELS_CU)
    kernels = {k.name.split("(")[0]: k for k in cuda.compile_source(ROOT, str(src), archs=(80,))}
    assert kernels["dyn_kernel"].dynamic_smem == 12345 and kernels["dyn_kernel"].threads == 128
    assert not kernels["dyn_kernel"].spills
    assert kernels["spill_kernel"].spills and kernels["spill_kernel"].regs <= 32
    assert [p for p in cuda.problems(list(kernels.values())) if "spill_kernel" in p]

"""The Triton block-sparse int8 kernel compiled ahead of time for sm_80 and sm_90 (ptxas runs on the CPU):
int8 tensor-core instructions, IEEE division in the requantisation. The interpreter (test_block_sparse_int8_op.py)
checks the numbers; this checks what the GPU compiler makes of the same code on CPU-only machines."""
import os
import subprocess
import sys

import pytest
import torch

_AOT = r'''
import os
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
from fastgan_kernels.triton import block_sparse_int8_linear as kb

fn = kb._bsr_int8_kernel
types = {"x_ptr": "*i8", "v_ptr": "*i8", "ptr_ptr": "*i32", "idx_ptr": "*i32", "order_ptr": "*i32",
         "x_scale_ptr": "*fp32", "w_scale_ptr": "*fp32", "bias_ptr": "*fp32", "out_scale_ptr": "*fp32",
         "negative_slope": "fp32"}
for arch, bm, warps, mma in ((80, 64, 4, "mma.sync.aligned.m16n8k32.row.col.satfinite.s32.s8.s8.s32"),
                             (90, 64, 4, "mma")):
    for kind, out in ((0, "*bf16"), (1, "*i8")):
        consts = dict(BN=32, BK=32, SUB_IN=32, SUB_OUT=32, OUT_KIND=kind, X_PER_TOKEN=kind == 0, HAS_BIAS=True,
                      ACTIVATION=2, I8_VIA_F32=False, BLOCK_M=bm)
        sig = {a: ("constexpr" if a in consts else {**types, "c_ptr": out}.get(a, "i32")) for a in fn.arg_names}
        div16 = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in fn.arg_names if a.endswith("_ptr")}
        src = ASTSource(fn, sig, constexprs=consts, attrs=div16)
        ptx = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                             options={"num_warps": warps, "num_stages": 3}).asm["ptx"]
        assert mma in ptx and ".s8" in ptx, (arch, kind, "int8 tensor-core instruction missing")
        assert (kind == 1) == ("div.rn.f32" in ptx), (arch, kind, "requantisation must divide with div.rn")
print("AOT-OK")
'''


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU runs the kernel itself")
def test_gpu_code_generation_without_gpu():
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

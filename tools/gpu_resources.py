"""GPU resource check without a GPU: ``python tools/gpu_resources.py [--subset] [--check] ...``.

Same as ``python -m fastgan_kernels.aot`` (the Triton kernels, every autotune config, sm_80/sm_90);
with ``--cuda`` it also runs ``nvcc -Xptxas -v`` on csrc/cuda/*.cu (tools/check_cuda_sources.py)
and appends the CUDA C++ kernels' registers, spills, shared memory and occupancy.
``make gpu-resources`` writes docs/gpu_resources.md with both.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

if __name__ == "__main__":
    from fastgan_kernels.aot.__main__ import main

    sys.exit(main())

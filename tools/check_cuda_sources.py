"""Compile every csrc/cuda/*.cu with nvcc and fail on a source that does not build or a kernel that spills.

CI runs this (``make cuda-check``) on machines without a GPU, so CUDA code that does not build, or
whose kernels spill registers on sm_80 / sm_90 (``nvcc -Xptxas -v``), cannot land. Object files go
to a temporary directory. Optional arguments name the sources to check (while iterating on one
file); FASTGAN_CUDA_ARCHS picks the archs (default 80,90). The flags and the log parsing are
fastgan_kernels/aot/cuda.py's, which also writes the resource table of docs/gpu_resources.md.
"""
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    if shutil.which("nvcc") is None:
        print("nvcc not found: nothing checked")
        return 0
    from fastgan_kernels.aot import cuda

    archs = [int(a) for a in os.environ.get("FASTGAN_CUDA_ARCHS", "80,90").split(",")]
    srcs = [os.path.abspath(a) for a in sys.argv[1:]] or cuda.sources(ROOT)
    if not srcs:
        print("no CUDA sources found under csrc/cuda", file=sys.stderr)
        return 1
    failed, kernels = [], []
    for src in srcs:
        try:
            kernels += cuda.compile_all(ROOT, archs, [src], use_cache=False)  # CI compiles, always
        except RuntimeError as e:
            print(e, file=sys.stderr)
            failed.append(os.path.relpath(src, ROOT))
    spills = cuda.problems(kernels)
    for line in spills:
        print("SPILL:", line, file=sys.stderr)
    if failed:
        print(f"{len(failed)} CUDA source(s) failed to compile: {failed}", file=sys.stderr)
    if failed or spills:
        return 1
    print(f"all {len(srcs)} CUDA sources compile; {len(kernels)} kernel entries, none spills")
    return 0


if __name__ == "__main__":
    sys.exit(main())

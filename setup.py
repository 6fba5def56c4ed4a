"""Builds the extension fastgan_kernels._C from csrc/.

The C++ CPU kernels are always built. The CUDA kernels (csrc/cuda/*.cu) are built
when the installed torch has CUDA and a CUDA toolkit is found (set
FASTGAN_NO_CUDA=1 to skip them). Each ISA-specific CPU file selects its own target
with `#pragma GCC target`, so the whole extension compiles for the baseline x86-64
(or aarch64) target and picks AVX-512 / VNNI / AMX code paths at run time.
"""
import glob
import os

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


# torch's BuildExtension adds the C++ standard its headers need (c++17 or c++20).
def extension():
    sources = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp") + _sources("csrc/cpu/chain/*.cpp")
    cxx = ["-O3", "-fno-math-errno", "-Wall", "-Wno-unused-function"]
    with_cuda = (
        torch.version.cuda is not None
        and CUDA_HOME is not None
        and os.environ.get("FASTGAN_NO_CUDA", "0") != "1"
    )
    if not with_cuda:
        return CppExtension("fastgan_kernels._C", sources, extra_compile_args={"cxx": cxx})
    nvcc = ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]
    return CUDAExtension(
        "fastgan_kernels._C",
        sources + _sources("csrc/cuda/*.cu"),
        define_macros=[("FASTGAN_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc},
    )


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)

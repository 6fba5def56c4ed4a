"""Compile every csrc/cuda/*.cu with `nvcc -c` against the installed torch's headers.

CI runs this on machines without a GPU, so CUDA code that does not build cannot
land. Object files go to a temporary directory; the exit status is the number of
sources that failed (capped at 1).
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import torch
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = os.environ.get("FASTGAN_CUDA_ARCHS", "80,90").split(",")


def _cxx_standard():
    """The C++ standard torch's own extension builder uses (c++17 up to ~2.9, then c++20)."""
    with open(cpp_extension.__file__) as f:
        return "c++20" if "-std=c++20" in f.read() else "c++17"


def _cuda_macros_shim(includes, tmp):
    """A CPU-only torch ships c10/cuda headers without the one CMake generates.

    Its content in CUDA builds is a single define; recreate it so the check can run
    against a CPU torch (a CUDA torch has the real file, found first).
    """
    rel = os.path.join("c10", "cuda", "impl", "cuda_cmake_macros.h")
    if any(os.path.exists(os.path.join(p, rel)) for p in includes):
        return tmp
    os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
    with open(os.path.join(tmp, rel), "w") as f:
        f.write("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return tmp


def nvcc_command(src: str, obj: str, shim_dir: str, archs=None) -> list:
    """The nvcc -c command line for one source (the shim header, if needed, is written into shim_dir)."""
    includes = cpp_extension.include_paths() + [sysconfig.get_paths()["include"], os.path.join(ROOT, "csrc")]
    includes.append(_cuda_macros_shim(includes, shim_dir))
    flags = [f"-std={_cxx_standard()}", "-O3", "--expt-relaxed-constexpr", "-DFASTGAN_WITH_CUDA=1",
             f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", "-Xcompiler", "-fPIC"]
    flags += [f"-gencode=arch=compute_{a},code=sm_{a}" for a in (archs or ARCHS)]
    return [shutil.which("nvcc") or "nvcc", "-c", src, "-o", obj, *flags, *[f"-I{p}" for p in includes]]


def main() -> int:
    if shutil.which("nvcc") is None:
        print("nvcc not found: nothing checked")
        return 0
    # Optional arguments name the sources to check (while iterating on one file); default: all.
    sources = [os.path.abspath(a) for a in sys.argv[1:]] or sorted(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    if not sources:
        print("no CUDA sources found under csrc/cuda", file=sys.stderr)
        return 1
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in sources:
            cmd = nvcc_command(src, os.path.join(tmp, os.path.basename(src) + ".o"), tmp)
            print(f"nvcc -c {os.path.relpath(src, ROOT)} (sm_{', sm_'.join(ARCHS)})", flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(src)
    if failed:
        print(f"{len(failed)} CUDA source(s) failed to compile: {[os.path.relpath(f, ROOT) for f in failed]}",
              file=sys.stderr)
        return 1
    print(f"all {len(sources)} CUDA sources compile")
    return 0


if __name__ == "__main__":
    sys.exit(main())

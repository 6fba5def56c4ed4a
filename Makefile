# Two commands do the whole set-up on a fresh machine (see README):
#   make bench   # the main job: the benchmark report (docs/benchmarks.md, out/)
#   make test    # the test suite
# Both create .venv when missing, install a CPU torch when it has none
# (TORCH_SPEC, on disk on the project's machines), and build the extension with
# --no-build-isolation so no build downloads its own torch. Re-running is cheap.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
export MAX_JOBS ?= 2
# Every benchmark provider runs under the same allocator settings (shared/CPU_NOTES.md):
# the harness also sets them in-process with mallopt, this covers the very first allocations.
BENCH_ENV := GLIBC_TUNABLES=glibc.malloc.mmap_threshold=67108864:glibc.malloc.trim_threshold=268435456
SOURCES := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh') setup.py pyproject.toml

.PHONY: setup test bench bench-quick bench-serve benchmarks cuda-check gpu-resources clean

setup: $(VENV)/.fastgan-installed

$(VENV)/.fastgan-installed: $(SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install "setuptools>=64" wheel ninja
	# A CPU-only torch tests the Triton kernels in Triton's interpreter, which needs triton >= 3.9.
	if $(PY) -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then \
	    $(PY) -m pip install "triton>=3.9"; fi
	$(PY) -m pip install --no-build-isolation -e ".[all]"
	touch $@

test: setup
	$(PY) -m pytest tests

bench: setup
	$(BENCH_ENV) $(PY) -m fastgan_kernels.cli bench --markdown docs/benchmarks.md --json out/bench.json --plot out/plots

bench-quick: setup
	$(BENCH_ENV) $(PY) -m fastgan_kernels.cli bench --quick

# The HTTP service under load (batched vs unbatched, seed and wide int8 G): a few minutes, so not in `bench`.
bench-serve: setup
	$(BENCH_ENV) $(PY) -m fastgan_kernels.cli bench --suite serve --json out/bench_serve.json

benchmarks: setup
	$(BENCH_ENV) $(PY) -m pytest benchmarks --benchmark-only

cuda-check: setup
	$(PY) tools/check_cuda_sources.py

# Every Triton kernel x autotune config x launch variant compiled for sm_80, sm_90 and sm_100 on the CPU, and
# the CUDA C++ kernels through nvcc -Xptxas -v: docs/gpu_resources.md (`make test` compiles a subset).
gpu-resources: setup
	$(PY) tools/gpu_resources.py --archs 80,90,100 --cuda --markdown docs/gpu_resources.md --json out/gpu_resources.json --check

clean:
	rm -rf build fastgan_kernels/_C*.so $(VENV)

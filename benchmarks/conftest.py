"""pytest-benchmark set-up for every op's benchmark module (see fastgan_kernels/bench/pytest_plugin.py).

Run: ``pytest benchmarks --benchmark-only`` (add ``--fastgan-device cuda`` on a GPU machine,
``--fastgan-quick`` for the short set; ``--benchmark-json``, ``--benchmark-autosave`` and
``--benchmark-compare`` work as pytest-benchmark documents them).
"""
from fastgan_kernels.bench.pytest_plugin import (  # noqa: F401  (hooks and fixtures)
    fastgan_bench_state, pytest_addoption, pytest_benchmark_update_machine_info, pytest_generate_tests)

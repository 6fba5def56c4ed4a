"""pytest-benchmark set-up for every op's benchmark module (see fastgan_kernels/bench/pytest_plugin.py).

Run: ``pytest benchmarks --benchmark-only``: a representative set of every suite (``--fastgan-cases
quick``, minutes on the 2-core CPU), ending with the speed-ups vs eager and the target lines.
``--fastgan-cases default`` runs the set that ``fastgan-kernels bench`` times (about three times as
many tests), ``--fastgan-cases full`` runs every suite's FULL grid (block-sparse: each
sparsity x block x shape and the pruned wide generator at batch 64 and 1024; int8: every generator
layer at M in {64, 1024} and both generators at both batches; the break-even sweep at 5% steps),
hours on the 2-core CPU; ``--fastgan-quick`` (= ``--fastgan-cases quick``) the short set; ``--fastgan-device cuda`` on a GPU machine;
``-k block_sparse`` / ``-k int8`` pick suites; ``--benchmark-json``, ``--benchmark-autosave`` and
``--benchmark-compare`` work as pytest-benchmark documents them, and ``--benchmark-max-time`` bounds
the slow peers (torch.sparse BSR) per test.
"""
from fastgan_kernels.bench.pytest_plugin import (  # noqa: F401  (hooks and fixtures)
    fastgan_bench_state, pytest_addoption, pytest_benchmark_update_machine_info, pytest_configure,
    pytest_generate_tests, pytest_terminal_summary)

"""The benchmark harness: timing, suites (one per op), providers, runner, reports and plots.

``fastgan-kernels bench`` (bench/cli.py) and ``pytest benchmarks --benchmark-only``
(bench/pytest_plugin.py) are its two front ends. Submodules are imported lazily by
their users: importing this package costs nothing.
"""

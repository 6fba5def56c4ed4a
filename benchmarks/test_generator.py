"""Whole generators per request (compile_generator vs eager, torch.compile, per-layer fastgan, ONNX Runtime)."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_generator = bench_op("generator")

"""fused_linear: eager, torch.compile and each fastgan backend on the generators' layer shapes."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_fused_linear = bench_op("fused_linear")

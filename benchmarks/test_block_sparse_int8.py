"""block_sparse_int8 (our dense int8, our sparse fp32, each fastgan backend of the block-sparse int8 op; the
pruned and quantised wide generator). ``pytest benchmarks --benchmark-only`` runs the full grid (sparsity
75 / 90 / 95%, block 16 and 32); ``--fastgan-cases default`` the subset of ``fastgan-kernels bench``."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_block_sparse_int8 = bench_op("block_sparse_int8")

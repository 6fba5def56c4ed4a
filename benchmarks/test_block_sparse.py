"""block_sparse_linear (eager dense, torch.sparse BSR, each fastgan backend; the pruned wide generator) and the
break-even sweep against the dense fused kernel. ``pytest benchmarks --benchmark-only`` runs the full grid
(every sparsity x block x shape); ``--fastgan-cases default`` the subset of ``fastgan-kernels bench``."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_block_sparse_linear = bench_op("block_sparse_linear")
test_block_sparse_sweep = bench_op("block_sparse_sweep")

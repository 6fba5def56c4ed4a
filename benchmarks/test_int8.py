"""int8_linear: eager fp32, bf16, PyTorch's dynamic int8 (x86 and onednn engines), onednn.qlinear_pointwise,
torch._int_mm, torchao and each fastgan backend (dynamic and static), on layers and whole generators
(SQNR / PSNR in extra_info; a row passes at SQNR >= 30 dB, whole models at PSNR >= 35 dB)."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_int8_linear = bench_op("int8_linear")

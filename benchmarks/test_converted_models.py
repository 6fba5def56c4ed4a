"""converted_models: public-style GAN models (BatchNorm generator, Dropout discriminator), eager vs fuse()."""
from fastgan_kernels.bench.pytest_plugin import bench_op

test_converted_models = bench_op("converted_models")

// The ATen side of the CPU int8 linear kernels, shared by the dense (int8_linear.cpp) and the
// block-sparse (bsr_int8_linear.cpp) bindings: A (int8 with its scales, or float quantised
// per token while the GEMM packs it), the epilogue's tensors and the output. Defined in
// int8_linear.cpp.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <vector>

#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {

// A = xq [M, K] int8 (any strides) with x_scale [M] or [1]; `keep` holds the scales' tensor.
void set_int8_a(GemmArgs& g, const at::Tensor& xq, const at::Tensor& x_scale, std::vector<at::Tensor>& keep,
                const char* op);

// A = x [M, K] float32 / bfloat16 / float16 (any strides), quantised per token through `f`.
void set_float_a(GemmArgs& g, FloatA& f, const at::Tensor& x, const char* op);

// w_scale [N], bias [N] or None, the activation, out_dtype (+ out_scale for int8) into g.e,
// and the output [g.M, g.N] of out_dtype, allocated here. `keep` holds the small tensors.
at::Tensor epilogue_args(GemmArgs& g, std::vector<at::Tensor>& keep, const char* op, const at::TensorOptions& opts,
                         const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, int64_t activation,
                         double negative_slope, at::ScalarType out_dtype, const std::optional<at::Tensor>& out_scale);

// Runs `gemm` on g (A set by set_int8_a or set_float_a, epilogue by epilogue_args); with a
// float A, the per-token scales live in the calling thread's scratch for the call, and a
// NaN / Inf row raises a ValueError (also when there is no GEMM to run: N == 0).
void run(GemmArgs& g, FloatA* f, const std::function<int64_t(const GemmArgs&)>& gemm, const char* op);

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

// CPU kernels of fastgan_ext::fused_linear_fwd / fused_linear_bwd (schemas in ops.cpp).
//
// Both are instances of the GEMM core (gemm/gemm.h), which handles any strides and
// dtypes while packing, so nothing here calls .contiguous() on x, weight or grad_out:
//   forward      y  = act(x @ W^T + b)         epilogue: bias + act + dtype, in registers
//   grad_x       gx = (grad_out * act'(y)) @ W      prologue: act'(y) applied while
//   grad_weight  gw = (grad_out * act'(y))^T @ x    grad_out is packed (never materialised)
//   grad_bias    gb = sum_m grad_out * act'(y)      a light column reduction
//                                                  (gemm::column_sums, one pass)
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "activation.h"
#include "gemm/gemm.h"
#include "gemm/tile.h"

namespace fastgan {
namespace cpu {
namespace {

using gemm::DType;
using gemm::Mat;

DType dtype_of(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kF32;
    case at::kBFloat16: return DType::kBF16;
    case at::kHalf: return DType::kF16;
    default: TORCH_CHECK(false, "fused_linear (cpu): ", what, " must be float32, bfloat16 or float16, got ",
                         t.scalar_type());
  }
}

void check_2d(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 2, "fused_linear (cpu): ", what, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.device().is_cpu(), "fused_linear (cpu): ", what, " must be a CPU tensor");
}

void check_act(int64_t act) {
  TORCH_CHECK(act >= 0 && act < kNumActivations, "fused_linear (cpu): activation code must be in 0..", kNumActivations - 1,
              ", got ", act);
}

// A 2-D tensor as a strided view; `transposed` swaps its two dimensions.
Mat view(const at::Tensor& t, bool transposed = false) {
  Mat m;
  m.data = t.data_ptr();
  m.rs = transposed ? t.stride(1) : t.stride(0);
  m.cs = transposed ? t.stride(0) : t.stride(1);
  m.dtype = dtype_of(t, "tensor");
  return m;
}

at::Tensor bias_grad(const at::Tensor& go, const at::Tensor& y, int64_t act, float slope, at::ScalarType out_dtype) {
  const int64_t M = go.size(0), N = go.size(1);
  at::Tensor sums = at::empty({N}, go.options().dtype(at::kFloat));
  Mat ym;
  if (act != kIdentity) ym = view(y);
  gemm::column_sums(M, N, view(go), ym, static_cast<int>(act), slope, sums.data_ptr<float>());
  return out_dtype == at::kFloat ? sums : sums.to(out_dtype);
}

// ---- the ops --------------------------------------------------------------------------

at::Tensor fused_linear_fwd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            int64_t activation, double negative_slope) {
  check_2d(x, "x");
  check_2d(weight, "weight");
  check_act(activation);
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  TORCH_CHECK(weight.size(1) == K, "fused_linear (cpu): weight must be [N, ", K, "], got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == x.scalar_type(), "fused_linear (cpu): weight dtype ", weight.scalar_type(),
              " != x dtype ", x.scalar_type());
  const DType dt = dtype_of(x, "x");
  // The epilogue reads an fp32 bias. A contiguous fp32 bias is used in place; any other is
  // converted here with a plain loop (a tensor op would cost a dispatch and an allocation,
  // several microseconds, a noticeable share of a batch-64 layer).
  const float* bias_ptr = nullptr;
  static thread_local std::vector<float> bias_buf;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == N, "fused_linear (cpu): bias must be [", N, "], got ",
                bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "fused_linear (cpu): bias dtype must match x");
    if (bias->scalar_type() == at::kFloat && bias->stride(0) == 1) {
      bias_ptr = bias->data_ptr<float>();
    } else {
      const DType bdt = dtype_of(*bias, "bias");
      const char* b = static_cast<const char*>(bias->data_ptr());
      const int64_t step = bias->stride(0) * gemm::dtype_size(bdt);
      bias_buf.resize(N);
      for (int64_t n = 0; n < N; ++n) bias_buf[n] = gemm::load_scalar(b + n * step, bdt);
      bias_ptr = bias_buf.data();
    }
  }
  at::Tensor y = at::empty({M, N}, x.options());
  if (M == 0 || N == 0) return y;
  gemm::Problem p;
  p.M = M, p.N = N, p.K = K;
  p.a = view(x);
  p.b = view(weight, /*transposed=*/true);  // B[k, n] = W[n, k]
  p.bias = bias_ptr;
  p.act = static_cast<int>(activation);
  p.slope = static_cast<float>(negative_slope);
  p.c = y.data_ptr();
  p.ldc = N;
  p.c_dtype = dt;
  gemm::run(p);
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_linear_bwd(const at::Tensor& grad_out, const at::Tensor& y,
                                                                const at::Tensor& x, const at::Tensor& weight,
                                                                int64_t activation, double negative_slope,
                                                                bool need_x, bool need_weight, bool need_bias) {
  check_2d(grad_out, "grad_out");
  check_2d(x, "x");
  check_2d(weight, "weight");
  check_act(activation);
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  TORCH_CHECK(weight.size(1) == K, "fused_linear_bwd (cpu): weight must be [N, ", K, "], got ", weight.sizes());
  TORCH_CHECK(grad_out.size(0) == M && grad_out.size(1) == N, "fused_linear_bwd (cpu): grad_out must be [", M,
              ", ", N, "], got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type() && weight.scalar_type() == x.scalar_type(),
              "fused_linear_bwd (cpu): grad_out, x and weight must share one dtype");
  const bool has_y = activation != kIdentity;
  if (has_y) {
    check_2d(y, "y");
    TORCH_CHECK(y.size(0) == M && y.size(1) == N, "fused_linear_bwd (cpu): y must be [", M, ", ", N, "], got ",
                y.sizes());
    TORCH_CHECK(y.scalar_type() == x.scalar_type(), "fused_linear_bwd (cpu): y dtype must match x");
  }
  dtype_of(x, "x");
  const float slope = static_cast<float>(negative_slope);
  at::Tensor gx, gw, gb;
  gemm::Problem base;
  base.dact = static_cast<int>(activation);
  base.dact_slope = slope;
  if (need_x) {  // gx[M, K] = g[M, N] @ W[N, K]
    gx = at::empty({M, K}, x.options());
    gemm::Problem p = base;
    p.M = M, p.N = K, p.K = N;
    p.a = view(grad_out);
    if (has_y) p.y = view(y);
    p.b = view(weight);
    p.c = gx.data_ptr(), p.ldc = K, p.c_dtype = dtype_of(x, "x");
    if (M > 0 && K > 0) gemm::run(p);
  }
  if (need_weight) {  // gw[N, K] = g^T[N, M] @ x[M, K]
    gw = at::empty({N, K}, weight.options());
    gemm::Problem p = base;
    p.M = N, p.N = K, p.K = M;
    p.a = view(grad_out, /*transposed=*/true);
    if (has_y) p.y = view(y, /*transposed=*/true);
    p.b = view(x);
    p.c = gw.data_ptr(), p.ldc = K, p.c_dtype = dtype_of(weight, "weight");
    if (N > 0 && K > 0) gemm::run(p);
  }
  if (need_bias) gb = bias_grad(grad_out, has_y ? y : grad_out, activation, slope, weight.scalar_type());
  return {gx, gw, gb};
}

}  // namespace
}  // namespace cpu
}  // namespace fastgan

TORCH_LIBRARY_IMPL(fastgan_ext, CPU, m) {
  m.impl("fused_linear_fwd", &fastgan::cpu::fused_linear_fwd);
  m.impl("fused_linear_bwd", &fastgan::cpu::fused_linear_bwd);
}

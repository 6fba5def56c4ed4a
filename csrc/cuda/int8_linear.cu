// CUDA kernels of the int8 ops of fastgan_ext (schemas in csrc/ops.cpp):
//
//   quantize_per_token(x) -> (q, scale)   one warp per row: absmax (warp shuffle), scale = amax / 127,
//                                          q = clamp(rint(x / scale), -127, 127); a non-finite row gets a
//                                          NaN scale (no error: that would need a host sync)
//   quantize_per_tensor(x, scale) -> q     elementwise with the given scale [1]
//   int8_pack_weight(wq) -> w_packed       the layout int8_linear_fwd reads (below)
//   int8_linear_fwd(...)                   acc = xq @ w^T in int32 (exact), epilogue
//                                          act(acc * x_scale[m or 0] * w_scale[n] + bias[n]) as fp32 / bf16 /
//                                          fp16, int8 requantised with out_scale, or int32 = acc
//
// Packed weight layout: w_packed = wq as a contiguous int8 [N, Kp] tensor, Kp = K rounded up to a
// multiple of 16, the padding zero. Every row then starts on a 16-byte boundary, so the GEMM always
// streams the weight with 16-byte cp.async chunks whatever K is (ldmatrix reads the K-contiguous
// rows directly as mma's "col" B operand, so no further swizzle is needed). int8_linear_fwd also
// accepts a plain wq [N, K] (any strides): chunks are then used only where its layout allows.
//
// Kernels: int8_gemm.cuh (mma.sync m16n8k32 s8 on sm_80+; __dp4a / plain loop elsewhere, chosen
// with the same ptxVersion test as fused_linear.cu) and int8_common.cuh (quantisers, epilogue).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "device_info.cuh"
#include "host.cuh"
#include "int8_common.cuh"
#include "int8_gemm.cuh"

namespace {

using namespace fastgan::cuda;

DeviceInfo device_info(int device) { return device_info_for<&int8_gemm_tc_kernel<I8Small>>(device); }

void check_cuda(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name) {
  TORCH_CHECK(t.defined() && t.is_cuda() && t.device() == ref.device(), "fastgan_ext::", op, " (CUDA): ", name,
              " must be a tensor on ", ref.device());
}

// A float [numel] tensor (fp32), e.g. a scale or a bias; returns its element stride.
int64_t check_f32_vector(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                         int64_t numel) {
  check_cuda(t, ref, op, name);
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.dim() <= 1 && t.numel() == numel, "fastgan_ext::", op,
              " (CUDA): ", name, " must be a float32 tensor of ", numel, " elements, got ", t.scalar_type(), " ",
              t.sizes());
  return t.dim() == 0 ? 0 : t.stride(0);
}

std::tuple<at::Tensor, at::Tensor> quantize_per_token_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, "fastgan_ext::quantize_per_token (CUDA): x must be a 2-D CUDA tensor");
  const int64_t m = x.size(0), k = x.size(1);
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor q = at::empty({m, k}, x.options().dtype(at::kChar));
  at::Tensor scale = at::empty({m}, x.options().dtype(at::kFloat));
  if (m == 0) return {q, scale};
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const int64_t es = static_cast<int64_t>(x.element_size()), per16 = 16 / es;
    const bool vec = (k == 0 || x.stride(1) == 1) && ((x.stride(0) * es) % 16 == 0 || m == 1) && k % per16 == 0 &&
                     reinterpret_cast<uintptr_t>(x.const_data_ptr()) % 16 == 0;
    const int64_t blocks = ceil_div(m, kQuantWarps);
    TORCH_CHECK(blocks <= INT32_MAX, "quantize_per_token: too many rows: ", m);
    quantize_per_token_kernel<T><<<static_cast<unsigned>(blocks), 32 * kQuantWarps, 0, stream>>>(
        raw<T>(x), x.stride(0), x.stride(1), m, k, vec, q.mutable_data_ptr<int8_t>(),
        scale.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {q, scale};
}

at::Tensor quantize_per_tensor_cuda(const at::Tensor& x, const at::Tensor& scale) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, "fastgan_ext::quantize_per_tensor (CUDA): x must be a 2-D CUDA tensor");
  check_f32_vector(scale, x, "quantize_per_tensor", "scale", 1);
  const int64_t m = x.size(0), k = x.size(1);
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor q = at::empty({m, k}, x.options().dtype(at::kChar));
  if (m == 0 || k == 0) return q;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    constexpr int threads = 256;
    const int64_t col_blocks = ceil_div(k, threads);
    TORCH_CHECK(col_blocks <= INT32_MAX, "quantize_per_tensor: too many columns: ", k);
    const dim3 grid(static_cast<unsigned>(col_blocks), static_cast<unsigned>(std::min<int64_t>(m, 65535)));
    quantize_per_tensor_kernel<T><<<grid, threads, 0, stream>>>(raw<T>(x), x.stride(0), x.stride(1), m, k,
                                                               scale.const_data_ptr<float>(),
                                                               q.mutable_data_ptr<int8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return q;
}

at::Tensor int8_pack_weight_cuda(const at::Tensor& wq) {
  TORCH_CHECK(wq.is_cuda() && wq.dim() == 2 && wq.scalar_type() == at::kChar,
              "fastgan_ext::int8_pack_weight (CUDA): wq must be a 2-D int8 CUDA tensor");
  c10::cuda::CUDAGuard guard(wq.device());
  const int64_t n = wq.size(0), k = wq.size(1), kp = ceil_div(k, 16) * 16;
  at::Tensor packed = at::zeros({n, kp}, wq.options());  // zero padding: adds nothing to any dot product
  if (n > 0 && k > 0) packed.narrow(1, 0, k).copy_(wq);
  return packed;
}

template <class Cfg>
void launch_int8_tc(const I8Problem& p, cudaStream_t stream) {
  auto kernel = int8_gemm_tc_kernel<Cfg>;
  if (Cfg::SMEM > 48 * 1024) {  // opt in to more than 48 KB of dynamic shared memory, once per device
    static std::atomic<uint64_t> done{0};
    int dev = 0;
    C10_CUDA_CHECK(cudaGetDevice(&dev));
    const uint64_t bit = dev < 64 ? (uint64_t{1} << dev) : 0;
    if (bit == 0 || !(done.load() & bit)) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::SMEM));
      done.fetch_or(bit);
    }
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(p.m, Cfg::BM)), static_cast<unsigned>(ceil_div(p.n, Cfg::BN)));
  kernel<<<grid, Cfg::THREADS, Cfg::SMEM, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// 16-byte chunks along k: unit k-stride, 16-byte aligned rows.
bool chunks_ok(const void* p, int64_t s_row, int64_t s_k, int64_t rows) {
  return s_k == 1 && (s_row % 16 == 0 || rows == 1) && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}
bool words_ok(const void* p, int64_t s_row, int64_t s_k, int64_t rows) {
  return s_k == 1 && (s_row % 4 == 0 || rows == 1) && reinterpret_cast<uintptr_t>(p) % 4 == 0;
}

at::Tensor int8_linear_fwd_cuda(const at::Tensor& xq, const at::Tensor& x_scale, const at::Tensor& w_packed,
                                const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                                int64_t out_features, int64_t activation, double negative_slope,
                                at::ScalarType out_dtype, const std::optional<at::Tensor>& out_scale) {
  const char* op = "int8_linear_fwd";
  TORCH_CHECK(xq.is_cuda() && xq.dim() == 2 && xq.scalar_type() == at::kChar,
              "fastgan_ext::int8_linear_fwd (CUDA): xq must be a 2-D int8 CUDA tensor");
  const int64_t m = xq.size(0), k = xq.size(1), n = out_features;
  check_cuda(w_packed, xq, op, "w_packed");
  TORCH_CHECK(w_packed.scalar_type() == at::kChar && w_packed.dim() == 2 && w_packed.size(0) == n &&
                  w_packed.size(1) >= k,
              "fastgan_ext::int8_linear_fwd (CUDA): w_packed must be int8 [", n, ", >= ", k, "], got ",
              w_packed.scalar_type(), " ", w_packed.sizes());
  int kind = kOutF32;
  switch (out_dtype) {
    case at::kFloat: kind = kOutF32; break;
    case at::kBFloat16: kind = kOutBF16; break;
    case at::kHalf: kind = kOutF16; break;
    case at::kChar: kind = kOutI8; break;
    case at::kInt: kind = kOutI32; break;
    default: TORCH_CHECK(false, "fastgan_ext::int8_linear_fwd (CUDA): unsupported out_dtype ", out_dtype);
  }
  I8Problem p;
  if (kind != kOutI32) {  // the raw accumulator reads no scale, bias or activation
    p.epi.xs_stride = check_f32_vector(x_scale, xq, op, "x_scale", x_scale.numel() == 1 ? 1 : m);
    if (x_scale.numel() == 1) p.epi.xs_stride = 0;
    p.epi.ws_stride = check_f32_vector(w_scale, xq, op, "w_scale", n);
    p.epi.xs = x_scale.const_data_ptr<float>();
    p.epi.ws = w_scale.const_data_ptr<float>();
    if (bias.has_value() && bias->defined()) {
      p.epi.bias_stride = check_f32_vector(*bias, xq, op, "bias", n);
      p.epi.bias = bias->const_data_ptr<float>();
    }
    if (kind == kOutI8) {
      TORCH_CHECK(out_scale.has_value() && out_scale->defined(), "int8_linear_fwd: out_scale is required for int8");
      check_f32_vector(*out_scale, xq, op, "out_scale", 1);
      p.epi.out_scale = out_scale->const_data_ptr<float>();
    }
    p.epi.act = static_cast<int>(activation);
    p.epi.slope = static_cast<float>(negative_slope);
  }
  c10::cuda::CUDAGuard guard(xq.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({m, n}, xq.options().dtype(out_dtype));
  if (m == 0 || n == 0) return out;
  TORCH_CHECK(ceil_div(n, 64) <= 65535, "int8_linear_fwd: too many output columns for one launch: ", n);
  TORCH_CHECK(ceil_div(m, 64) <= INT32_MAX, "int8_linear_fwd: too many rows for one launch: ", m);

  p.a = xq.const_data_ptr<int8_t>(), p.a_sm = xq.stride(0), p.a_sk = xq.stride(1);
  p.b = w_packed.const_data_ptr<int8_t>(), p.b_sn = w_packed.stride(0), p.b_sk = w_packed.stride(1);
  p.m = m, p.n = n, p.k = k;
  p.epi.out = out.mutable_data_ptr(), p.epi.ldc = n, p.epi.rows = m, p.epi.cols = n, p.epi.kind = kind;
  p.epi.pair_ok = n % 2 == 0 && reinterpret_cast<uintptr_t>(p.epi.out) % (2 * out.element_size()) == 0;
  const DeviceInfo info = device_info(c10::cuda::current_device());
  if (info.sm80_code) {
    p.a_vec = chunks_ok(p.a, p.a_sm, p.a_sk, m);
    p.b_vec = chunks_ok(p.b, p.b_sn, p.b_sk, n);
    const bool large = ceil_div(m, I8Large::BM) * ceil_div(n, I8Large::BN) >= info.sms;
    large ? launch_int8_tc<I8Large>(p, stream) : launch_int8_tc<I8Small>(p, stream);
  } else {
    p.a_word = words_ok(p.a, p.a_sm, p.a_sk, m);
    p.b_word = words_ok(p.b, p.b_sn, p.b_sk, n);
    const dim3 grid(static_cast<unsigned>(ceil_div(m, kI8SimtTile)), static_cast<unsigned>(ceil_div(n, kI8SimtTile)));
    int8_gemm_simt_kernel<<<grid, kI8SimtThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan_ext, CUDA, m) {
  m.impl("quantize_per_token", &quantize_per_token_cuda);
  m.impl("quantize_per_tensor", &quantize_per_tensor_cuda);
  m.impl("int8_pack_weight", &int8_pack_weight_cuda);
  m.impl("int8_linear_fwd", &int8_linear_fwd_cuda);
}

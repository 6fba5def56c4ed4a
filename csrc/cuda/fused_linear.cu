// CUDA kernels of fastgan_ext::fused_linear_fwd / fused_linear_bwd (schemas in csrc/ops.cpp).
//
//   forward:      y       = act(x @ Wᵀ + b)       GEMM (i = m, j = n, r = k), epilogue bias + act
//   backward:     g       = grad_out * act'(y)    formed by the GEMM loaders (prologue), never stored
//                 grad_x  = g @ W                 GEMM (i = m, j = k, r = n), A = g,  B(j, r) = W[r, j]
//                 grad_W  = gᵀ @ x                GEMM (i = n, j = k, r = m), A = gᵀ, B(j, r) = x[r, j]
//                 grad_b  = g.sum(0)              column-sum kernel with the same prologue
//
// Every operand is passed as a strided view (no copies, any strides, stride 0 included):
// the transposes above only swap strides. fp16 / bf16 run on the tensor-core kernel
// (gemm_tc.cuh) on sm_80+, fp32 (exact, no TF32) and older GPUs on the SIMT kernel
// (gemm_simt.cuh); both share common.cuh's epilogue and prologue.
#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "bias_grad.cuh"
#include "common.cuh"
#include "device_info.cuh"
#include "host.cuh"
#include "gemm_simt.cuh"
#include "gemm_tc.cuh"

namespace {

using namespace fastgan::cuda;

// The tensor-core GEMM's body exists only where __CUDA_ARCH__ >= 800: it is the probe.
DeviceInfo device_info(int device) {
  return device_info_for<&gemm_tc_kernel<__half, TcSmall, false, false, false>>(device);
}

// Which index of an operand (i, r) to treat as contiguous: the one with the smaller
// stride among those of extent > 1 (ties and degenerate shapes: r).
bool row_index_contiguous(int64_t si, int64_t sr, int64_t ext_i, int64_t ext_r) {
  const int64_t big = INT64_MAX;
  return (ext_i > 1 ? si : big) < (ext_r > 1 ? sr : big);
}

// Whether 16-byte chunks of 8 consecutive 16-bit elements along the contiguous index can
// be loaded as one vector: unit stride there, 16-byte aligned lines.
bool chunk_loads_ok(const void* p, int64_t s_line, int64_t s_c, int64_t ext_line) {
  return s_c == 1 && (s_line % 8 == 0 || ext_line == 1) && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

template <typename T, class Cfg, bool AI, bool BI, bool PRO>
void run_tc(const GemmProblem<T>& p, cudaStream_t stream) {
  auto kernel = gemm_tc_kernel<T, Cfg, AI, BI, PRO>;
  constexpr int smem = tc_smem_bytes<Cfg, AI, BI>();
  if (smem > 48 * 1024) {  // opt in to more than 48 KB of dynamic shared memory, once per device
    static std::atomic<uint64_t> done{0};
    int dev = 0;
    C10_CUDA_CHECK(cudaGetDevice(&dev));
    const uint64_t bit = dev < 64 ? (uint64_t{1} << dev) : 0;
    if (bit == 0 || !(done.load() & bit)) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      done.fetch_or(bit);
    }
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(p.rows, Cfg::BM)), static_cast<unsigned>(ceil_div(p.cols, Cfg::BN)));
  kernel<<<grid, Cfg::THREADS, smem, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, class Cfg, bool PRO>
void run_tc_layouts(const GemmProblem<T>& p, bool ai, bool bi, cudaStream_t stream) {
  if (ai) {
    bi ? run_tc<T, Cfg, true, true, PRO>(p, stream) : run_tc<T, Cfg, true, false, PRO>(p, stream);
  } else {
    bi ? run_tc<T, Cfg, false, true, PRO>(p, stream) : run_tc<T, Cfg, false, false, PRO>(p, stream);
  }
}

template <typename T, class Cfg, bool PRO>
void run_simt(const GemmProblem<T>& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(ceil_div(p.rows, Cfg::BM)), static_cast<unsigned>(ceil_div(p.cols, Cfg::BN)));
  gemm_simt_kernel<T, Cfg, PRO><<<grid, Cfg::THREADS, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Fills the layout hints of `p` and launches the best kernel for its dtype and device.
// `prologue`: p.pro may be active (the backward kernels are compiled separately so the
// forward does not pay registers for y).
template <typename T>
void launch_gemm(GemmProblem<T> p, bool prologue, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  TORCH_CHECK(ceil_div(p.cols, 64) <= 65535, "fastgan_ext: too many output columns for one launch: ", p.cols);
  const int device = c10::cuda::current_device();
  const DeviceInfo info = device_info(device);
  const bool use_y = prologue && p.pro.act != kIdentity;
  // Output stores: pairs / quads when ldc and the (fresh, aligned) output allow it.
  const auto c_addr = reinterpret_cast<uintptr_t>(p.c);
  p.c_vec = (p.ldc % 4 == 0 && c_addr % (4 * sizeof(p.c[0])) == 0) ? 4
            : (p.ldc % 2 == 0 && c_addr % (2 * sizeof(p.c[0])) == 0) ? 2 : 1;
  // A's layout follows grad_out and y together (y's strides matter when grad_out is an
  // expanded, stride-0 tensor).
  const int64_t a_si = std::abs(p.a_si) + (use_y ? std::abs(p.pro.si) : 0);
  const int64_t a_sr = std::abs(p.a_sr) + (use_y ? std::abs(p.pro.sr) : 0);
  const bool ai = row_index_contiguous(a_si, a_sr, p.rows, p.depth);
  const bool bi = row_index_contiguous(p.b_sj, p.b_sr, p.cols, p.depth);
  p.a_ifast = ai;
  p.b_ifast = bi;
  const int64_t tiles_large = ceil_div(p.rows, 128) * ceil_div(p.cols, 128);
  const bool large = tiles_large >= info.sms;  // else smaller tiles: more blocks in flight

  if constexpr (Num<T>::kIs16Bit) {
    if (info.sm80_code) {
      // 16-byte chunk loads along the contiguous index (else element-wise loads).
      p.a_vec = ai ? chunk_loads_ok(p.a, p.a_sr, p.a_si, p.depth) : chunk_loads_ok(p.a, p.a_si, p.a_sr, p.rows);
      if (use_y)
        p.a_vec = p.a_vec && (ai ? chunk_loads_ok(p.pro.y, p.pro.sr, p.pro.si, p.depth)
                                 : chunk_loads_ok(p.pro.y, p.pro.si, p.pro.sr, p.rows));
      p.b_vec = bi ? chunk_loads_ok(p.b, p.b_sr, p.b_sj, p.depth) : chunk_loads_ok(p.b, p.b_sj, p.b_sr, p.cols);
      if (large)
        prologue ? run_tc_layouts<T, TcLarge, true>(p, ai, bi, stream)
                 : run_tc_layouts<T, TcLarge, false>(p, ai, bi, stream);
      else
        prologue ? run_tc_layouts<T, TcSmall, true>(p, ai, bi, stream)
                 : run_tc_layouts<T, TcSmall, false>(p, ai, bi, stream);
      return;
    }
  }
  if (large)
    prologue ? run_simt<T, SimtLarge, true>(p, stream) : run_simt<T, SimtLarge, false>(p, stream);
  else
    prologue ? run_simt<T, SimtSmall, true>(p, stream) : run_simt<T, SimtSmall, false>(p, stream);
}

void check_operand(const at::Tensor& t, const at::Tensor& x, const char* name, int64_t dim) {
  TORCH_CHECK(t.device() == x.device(), "fastgan_ext (CUDA): ", name, " must be on ", x.device(), ", got ",
              t.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fastgan_ext (CUDA): ", name, " must have dtype ",
              x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "fastgan_ext (CUDA): ", name, " must be ", dim, "-D, got ", t.dim(), "-D");
}

at::Tensor fused_linear_fwd_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                 int64_t activation, double negative_slope) {
  TORCH_CHECK(x.is_cuda(), "fastgan_ext::fused_linear_fwd (CUDA): x must be a CUDA tensor");
  check_operand(x, x, "x", 2);
  check_operand(weight, x, "weight", 2);
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  TORCH_CHECK(weight.size(1) == k, "fused_linear_fwd: weight must be [N, ", k, "], got ", weight.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_operand(*bias, x, "bias", 1);
    TORCH_CHECK(bias->size(0) == n, "fused_linear_fwd: bias must have ", n, " elements, got ", bias->size(0));
  }
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor y = at::empty({m, n}, x.options());
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    GemmProblem<T> p;
    p.a = raw<T>(x), p.a_si = x.stride(0), p.a_sr = x.stride(1);
    p.b = raw<T>(weight), p.b_sj = weight.stride(0), p.b_sr = weight.stride(1);
    p.c = raw_mut<T>(y), p.ldc = n;
    p.rows = m, p.cols = n, p.depth = k;
    if (has_bias) p.epi.bias = raw<T>(*bias), p.epi.bias_stride = bias->stride(0);
    p.epi.act = static_cast<int>(activation);
    p.epi.slope = static_cast<float>(negative_slope);
    launch_gemm<T>(p, /*prologue=*/false, stream);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_linear_bwd_cuda(const at::Tensor& grad_out, const at::Tensor& y,
                                                                     const at::Tensor& x, const at::Tensor& weight,
                                                                     int64_t activation, double negative_slope,
                                                                     bool need_x, bool need_weight, bool need_bias) {
  TORCH_CHECK(x.is_cuda(), "fastgan_ext::fused_linear_bwd (CUDA): x must be a CUDA tensor");
  check_operand(x, x, "x", 2);
  check_operand(weight, x, "weight", 2);
  check_operand(grad_out, x, "grad_out", 2);
  const int64_t m = x.size(0), k = x.size(1), n = weight.size(0);
  TORCH_CHECK(weight.size(1) == k, "fused_linear_bwd: weight must be [N, ", k, "], got ", weight.sizes());
  TORCH_CHECK(grad_out.size(0) == m && grad_out.size(1) == n, "fused_linear_bwd: grad_out must be [", m, ", ", n,
              "], got ", grad_out.sizes());
  const bool use_y = activation != kIdentity;  // identity never reads y
  if (use_y) {
    check_operand(y, x, "y", 2);
    TORCH_CHECK(y.sizes() == grad_out.sizes(), "fused_linear_bwd: y must be [", m, ", ", n, "], got ", y.sizes());
  }
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor gx, gw, gb;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    // The prologue for A(i, r) = g[m, n] (grad_x) and for A(i, r) = g[m, n]ᵀ (grad_W).
    GradPrologue<T> pro;
    pro.act = static_cast<int>(activation);
    pro.slope = static_cast<float>(negative_slope);
    if (use_y) pro.y = raw<T>(y), pro.si = y.stride(0), pro.sr = y.stride(1);
    GradPrologue<T> pro_t = pro;
    std::swap(pro_t.si, pro_t.sr);
    if (need_x) {
      gx = at::empty({m, k}, x.options());
      GemmProblem<T> p;
      p.a = raw<T>(grad_out), p.a_si = grad_out.stride(0), p.a_sr = grad_out.stride(1), p.pro = pro;
      p.b = raw<T>(weight), p.b_sj = weight.stride(1), p.b_sr = weight.stride(0);
      p.c = raw_mut<T>(gx), p.ldc = k;
      p.rows = m, p.cols = k, p.depth = n;
      launch_gemm<T>(p, /*prologue=*/true, stream);
    }
    if (need_weight) {
      gw = at::empty({n, k}, weight.options());
      GemmProblem<T> p;
      p.a = raw<T>(grad_out), p.a_si = grad_out.stride(1), p.a_sr = grad_out.stride(0), p.pro = pro_t;
      p.b = raw<T>(x), p.b_sj = x.stride(1), p.b_sr = x.stride(0);
      p.c = raw_mut<T>(gw), p.ldc = k;
      p.rows = n, p.cols = k, p.depth = m;
      launch_gemm<T>(p, /*prologue=*/true, stream);
    }
    if (need_bias) {
      gb = at::empty({n}, weight.options());
      launch_bias_grad<T>(grad_out, pro, gb, device_info(c10::cuda::current_device()).sms, stream);
    }
  });
  return {gx, gw, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan_ext, CUDA, m) {
  m.impl("fused_linear_fwd", &fused_linear_fwd_cuda);
  m.impl("fused_linear_bwd", &fused_linear_bwd_cuda);
}

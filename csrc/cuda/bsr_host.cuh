// Host-side helpers of the block-sparse launchers (block_sparse_linear.cu): device
// properties (device_info.cuh, probed with the tensor-core kernel), operand layout hints, dtype
// dispatch and the grad_bias launch of bias_grad.cuh's kernels. Include from one .cu only.
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>

#include "bias_grad.cuh"
#include "bsr_tc.cuh"
#include "device_info.cuh"

namespace fastgan {
namespace cuda {
namespace bsr_host {

inline DeviceInfo device_info(int device) {
  return device_info_for<&bsr_dense_tc_kernel<__half, BsrDenseCfg<16, 16>, false>>(device);
}

inline int log2_exact(int v) {
  int l = 0;
  while ((1 << l) < v) ++l;
  return l;
}

// The index whose stride is smaller (among extents > 1) is the contiguous one (fused_linear.cu's rule).
inline bool row_index_contiguous(int64_t si, int64_t sr, int64_t ext_i, int64_t ext_r) {
  const int64_t big = INT64_MAX;
  return (ext_i > 1 ? si : big) < (ext_r > 1 ? sr : big);
}

// 16-byte chunks of 8 elements along the in-line index are legal single loads.
inline bool chunk_loads_ok(const void* p, int64_t s_line, int64_t s_c, int64_t ext_line) {
  return s_c == 1 && (s_line % 8 == 0 || ext_line == 1) && reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

inline int out_vec(const void* c, int64_t ldc, size_t elem) {
  const auto a = reinterpret_cast<uintptr_t>(c);
  return (ldc % 4 == 0 && a % (4 * elem) == 0) ? 4 : (ldc % 2 == 0 && a % (2 * elem) == 0) ? 2 : 1;
}

template <typename T>
inline const typename Num<T>::Raw* raw(const at::Tensor& t) {
  return reinterpret_cast<const typename Num<T>::Raw*>(t.const_data_ptr());
}
template <typename T>
inline typename Num<T>::Raw* raw_mut(at::Tensor& t) {
  return reinterpret_cast<typename Num<T>::Raw*>(t.mutable_data_ptr());
}

template <typename Fn>
inline void dispatch_float(at::ScalarType st, Fn&& fn) {
  switch (st) {
    case at::kFloat: fn(float{}); break;
    case at::kHalf: fn(__half{}); break;
    case at::kBFloat16: fn(__nv_bfloat16{}); break;
    default: TORCH_CHECK(false, "fastgan_ext (CUDA): expected float32, float16 or bfloat16, got ", st);
  }
}

inline unsigned grid_size(int64_t blocks) {
  TORCH_CHECK(blocks <= INT32_MAX, "fastgan_ext (CUDA): too many blocks for one launch: ", blocks);
  return static_cast<unsigned>(blocks);
}

// grad_bias[j] = sum_i g[i, j] (with the prologue), as fused_linear.cu does.
template <typename T>
inline void launch_bias_grad(const at::Tensor& grad, const GradPrologue<T>& pro, at::Tensor& out, cudaStream_t stream) {
  const int64_t rows = grad.size(0), cols = grad.size(1);
  if (cols == 0) return;
  if (rows == 0) {
    out.zero_();
    return;
  }
  const int64_t col_blocks = ceil_div(cols, kBiasGradCols);
  const int64_t want = ceil_div(2 * device_info(c10::cuda::current_device()).sms, col_blocks);
  const int64_t splits_max = std::min<int64_t>({want, ceil_div(rows, 64), 1024});
  const int64_t rows_per_split = ceil_div(rows, std::max<int64_t>(splits_max, 1));
  const int64_t splits = ceil_div(rows, rows_per_split);
  at::Tensor partial;
  if (splits > 1) partial = at::empty({splits, cols}, grad.options().dtype(at::kFloat));
  const dim3 grid(grid_size(col_blocks), static_cast<unsigned>(splits));
  bias_grad_kernel<T><<<grid, dim3(kBiasGradCols, kBiasGradRows), 0, stream>>>(
      raw<T>(grad), grad.stride(0), grad.stride(1), pro, rows, cols, rows_per_split,
      splits > 1 ? partial.mutable_data_ptr<float>() : nullptr, raw_mut<T>(out));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (splits > 1) {
    bias_grad_finish_kernel<T><<<grid_size(ceil_div(cols, 256)), 256, 0, stream>>>(
        partial.const_data_ptr<float>(), static_cast<int>(splits), cols, raw_mut<T>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

}  // namespace bsr_host
}  // namespace cuda
}  // namespace fastgan

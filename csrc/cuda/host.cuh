// Host-side helpers shared by the CUDA launchers (fused_linear.cu, block_sparse_linear.cu,
// int8_linear.cu): raw pointers in the kernels' number types, the float dtype dispatch, a
// checked grid size, and the grad_bias launch of bias_grad.cuh's kernels.
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>

#include "bias_grad.cuh"
#include "common.cuh"

namespace fastgan {
namespace cuda {

template <typename T>
inline const typename Num<T>::Raw* raw(const at::Tensor& t) {
  return reinterpret_cast<const typename Num<T>::Raw*>(t.const_data_ptr());
}
template <typename T>
inline typename Num<T>::Raw* raw_mut(at::Tensor& t) {
  return reinterpret_cast<typename Num<T>::Raw*>(t.mutable_data_ptr());
}

// fn(T{}) with T = float, __half or __nv_bfloat16 for the tensor dtype `st`.
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

// grad_bias[j] = sum_i g[i, j] (with the prologue) into `out` (contiguous [cols]), on a GPU of
// `sms` multiprocessors: ~2 blocks per SM, each row split at least 64 rows, at most 1024 splits.
template <typename T>
inline void launch_bias_grad(const at::Tensor& grad, const GradPrologue<T>& pro, at::Tensor& out, int sms,
                             cudaStream_t stream) {
  const int64_t rows = grad.size(0), cols = grad.size(1);
  if (cols == 0) return;
  if (rows == 0) {
    out.zero_();
    return;
  }
  const int64_t col_blocks = ceil_div(cols, kBiasGradCols);
  const int64_t want = ceil_div(2 * static_cast<int64_t>(sms), col_blocks);
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

}  // namespace cuda
}  // namespace fastgan

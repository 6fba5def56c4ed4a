// Column sums of the activation gradient: grad_bias[j] = sum_i grad_out[i, j] * act'(y[i, j]).
//
// The prologue (act' from the saved output) is applied as each element is loaded, like
// the gradient GEMMs do; nothing is materialised. Accumulation is fp32 and the order is
// fixed, so results are deterministic (no atomics).
//
// Block: 32 x 8 threads. threadIdx.x walks 32 consecutive columns (coalesced when
// grad_out is row-major), threadIdx.y strides over the rows of the block's row split.
// Grid: x over 32-column groups, y over row splits (enough blocks to fill the GPU when
// there are few columns). With one split the block writes grad_bias directly; otherwise
// it writes fp32 partial sums [splits, cols] that bias_grad_finish_kernel adds in order.
#pragma once

#include "common.cuh"

namespace fastgan {
namespace cuda {

constexpr int kBiasGradCols = 32;
constexpr int kBiasGradRows = 8;

template <typename T>
__global__ void __launch_bounds__(kBiasGradCols* kBiasGradRows)
    bias_grad_kernel(const typename Num<T>::Raw* g, int64_t g_si, int64_t g_sj, GradPrologue<T> pro, int64_t rows,
                     int64_t cols, int64_t rows_per_split, float* partial, typename Num<T>::Raw* out) {
  __shared__ float red[kBiasGradRows][kBiasGradCols + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kBiasGradCols + tx;
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * rows_per_split;
  const int64_t i1 = i0 + rows_per_split < rows ? i0 + rows_per_split : rows;
  float sum = 0.f;
  if (j < cols) {
#pragma unroll 4
    for (int64_t i = i0 + ty; i < i1; i += kBiasGradRows) {
      float v = Num<T>::to_float(load_raw<T>(g + i * g_si + j * g_sj));
      // pro.si / pro.sr index y the same way: (row i, column j).
      if (pro.active()) v = pro.apply(v, Num<T>::to_float(load_raw<T>(pro.y + i * pro.si + j * pro.sr)));
      sum += v;
    }
  }
  red[ty][tx] = sum;
  __syncthreads();
  if (ty == 0 && j < cols) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kBiasGradRows; ++w) total += red[w][tx];
    if (gridDim.y == 1)
      out[j] = Num<T>::from_float(total);
    else
      partial[static_cast<int64_t>(blockIdx.y) * cols + j] = total;
  }
}

template <typename T>
__global__ void bias_grad_finish_kernel(const float* partial, int splits, int64_t cols, typename Num<T>::Raw* out) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  float total = 0.f;
  for (int s = 0; s < splits; ++s) total += partial[s * cols + j];
  out[j] = Num<T>::from_float(total);
}

}  // namespace cuda
}  // namespace fastgan

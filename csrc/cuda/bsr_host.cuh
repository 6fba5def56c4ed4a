// Host-side helpers of the block-sparse launchers (block_sparse_linear.cu): device
// properties (device_info.cuh, probed with the tensor-core kernel) and operand layout hints;
// the dtype dispatch and the grad_bias launch are host.cuh's. Include from one .cu only.
#pragma once

#include <algorithm>
#include <cstdint>

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>

#include "bsr_tc.cuh"
#include "device_info.cuh"
#include "host.cuh"

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

}  // namespace bsr_host
}  // namespace cuda
}  // namespace fastgan

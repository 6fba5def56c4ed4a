// The block-sparse linear kernels' problem descriptions and per-ISA entry points.
//
// W [N, K] is stored as BSR (fastgan_kernels/ops/bsr.py): kept blocks values[j] [bn, bk],
// block row r owning j in [row_ptr[r], row_ptr[r+1]) at block columns col_idx[j]; W.T's
// structure (t_row_ptr, t_col_idx = block rows, t_block = indices into values) walks the
// kept blocks by block column. Padding past N / K inside the last blocks is zero.
//
// Three products, each an instance of "a list of (A segment, B segment) pairs per output
// tile" over the GEMM core's packed panels and micro-kernel k loops:
//   forward  y[:, r]  = act(sum_j x[:, c_j] @ values[j]^T + b)   segments: kept blocks of row r
//   grad_x   gx[:, c] = sum_i g[:, r_i] @ values[t_block[i]]      segments: kept blocks of column c
//   grad_values gv[j] = g[:, r_j]^T @ x[:, c_j]                   one segment (k = the batch)
// with g = grad_out * act'(y) formed while g is packed (the GEMM core's prologue).
//
// How the work is split over threads and walked for the caches: split.h.
#pragma once

#include <cstdint>

#include "../gemm/gemm.h"

namespace fastgan {
namespace cpu {
namespace bsr {

using gemm::DType;
using gemm::Mat;

// The BSR structure of W (and optionally of W.T).
struct Structure {
  int64_t N = 0, K = 0;    // dense shape of W
  int64_t bn = 0, bk = 0;  // block
  int64_t nbr = 0, nbc = 0, nnz = 0;
  const int32_t* row_ptr = nullptr;  // [nbr + 1]
  const int32_t* col_idx = nullptr;  // [nnz]
  const int32_t* t_row_ptr = nullptr;  // [nbc + 1] (backward only)
  const int32_t* t_col_idx = nullptr;  // [nnz]
  const int32_t* t_block = nullptr;    // [nnz]
  const void* values = nullptr;        // [nnz, bn, bk], contiguous
  DType vdtype = DType::kF32;
};

struct Forward {
  int64_t M = 0;
  Structure w;
  Mat x;                        // [M, K], any strides
  const float* bias = nullptr;  // [N] fp32 or null
  int act = 0;
  float slope = 0.f;
  void* y = nullptr;            // [M, N] contiguous
  DType ydtype = DType::kF32;
};

struct Backward {
  int64_t M = 0;
  Structure w;
  Mat g, y, x;       // grad_out, saved output (read when dact != 0), input: [M, N], [M, N], [M, K]
  int dact = 0;
  float slope = 0.f;
  void* gx = nullptr;  // [M, K] contiguous in x's dtype, or null (not requested)
  void* gv = nullptr;  // [nnz, bn, bk] contiguous in values' dtype, or null
};

// Per-ISA entry points (bsr_*.cpp). The portable ones run anywhere; the AVX2 and AVX-512
// ones only where dispatch (bsr_linear.cpp) allows.
void forward_portable(const Forward& p);
void forward_avx2_f32(const Forward& p);
void forward_avx512_f32(const Forward& p);
void forward_avx512_bf16(const Forward& p);
void backward_portable(const Backward& p);
void backward_avx2_f32(const Backward& p);
void backward_avx512_f32(const Backward& p);
void backward_avx512_bf16(const Backward& p);

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

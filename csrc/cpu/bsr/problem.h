// The block-sparse linear kernels' problem descriptions and their thread split.
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
// Balancing: the forward (and grad_x) work is a row-major sequence of units (block row r,
// m-tile i) costing w_r = nnz_r * bk + kTileOverhead each, so a block row's cost is
// proportional to its kept blocks. Each thread takes one contiguous range of that
// sequence with an equal share of the total: contiguous block rows, the first and last
// possibly shared with the neighbour thread along the batch (m-tiles). A skewed pattern (one
// dense row, many empty ones) is thus split inside the dense row instead of giving it whole
// to one thread. No atomics: every output tile belongs to exactly one thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

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

// Per-ISA entry points (bsr_*.cpp). The portable ones run anywhere; the AVX-512 ones only
// where dispatch (bsr_linear.cpp) allows.
void forward_portable(const Forward& p);
void forward_avx512_f32(const Forward& p);
void forward_avx512_bf16(const Forward& p);
void backward_portable(const Backward& p);
void backward_avx512_f32(const Backward& p);
void backward_avx512_bf16(const Backward& p);

namespace {

// Per-tile cost besides the FMAs (epilogue, stores, the segment walk), in k steps; it also
// gives empty block rows (which still write act(bias)) a weight.
constexpr int64_t kTileOverhead = 8;

// Units [0, lines * tiles): unit u = line * tiles + tile, each costing cost(line) (all
// tiles of a line cost the same). Splits them into `parts` contiguous ranges of equal
// cost; bounds[t]..bounds[t+1] is part t. `cost` is evaluated once per line.
template <class Cost>
std::vector<int64_t> balanced_bounds(int64_t lines, int64_t tiles, int parts, const Cost& cost) {
  std::vector<double> prefix(lines + 1, 0.0);  // cost of lines [0, l), all their tiles
  for (int64_t l = 0; l < lines; ++l) prefix[l + 1] = prefix[l] + static_cast<double>(cost(l)) * tiles;
  std::vector<int64_t> bounds(parts + 1, lines * tiles);
  bounds[0] = 0;
  const double total = prefix[lines];
  int64_t l = 0;
  for (int t = 1; t < parts; ++t) {
    const double target = total * t / parts;
    while (l < lines && prefix[l + 1] <= target) ++l;  // line l holds the cut
    int64_t u = l * tiles;
    if (l < lines) {
      const double per_tile = (prefix[l + 1] - prefix[l]) / tiles;
      u += std::min<int64_t>(tiles, static_cast<int64_t>((target - prefix[l]) / per_tile + 0.5));
    }
    bounds[t] = std::max(bounds[t - 1], std::min(u, lines * tiles));
  }
  return bounds;
}

// Walks the units [u0, u1) of (line l, m-tile i), u = l * mt + i, blocked for the caches:
//   for each group of consecutive lines whose B data (bytes(l)) fits `budget` (>= 1 line):
//     prepare(l0, l1, l2)            [l0, l1) the group, [l1, l2) the next one (to prefetch)
//     for each chunk of `chunk` m-tiles:
//       for each line l of the group: for each m-tile i of the chunk: body(l, i)
// so the group's B stays in L2 across all m-tiles (read once from memory), the chunk's A
// panels (x rows, all of K) stay in L2 across the group's lines (read once per group), and
// one line's B stays in L1 across the m-tiles of a chunk.
template <class Bytes, class Prepare, class Body>
void grouped_walk(int64_t u0, int64_t u1, int64_t mt, int64_t budget, int64_t chunk, const Bytes& bytes,
                  const Prepare& prepare, const Body& body) {
  if (u0 >= u1) return;
  const int64_t last = (u1 - 1) / mt;
  auto group_end = [&](int64_t l0) {
    int64_t l1 = l0 + 1, size = bytes(l0);
    while (l1 <= last && size + bytes(l1) <= budget) size += bytes(l1++);
    return l1;
  };
  chunk = std::max<int64_t>(1, chunk);
  for (int64_t l0 = u0 / mt, l1 = group_end(l0); l0 <= last;) {
    const int64_t l2 = l1 <= last ? group_end(l1) : l1;
    prepare(l0, l1, l2);
    // a one-line group may be the range's first (starting late) or last (ending early) line
    const bool single = l1 - l0 == 1;
    const int64_t lo = single ? std::max<int64_t>(0, u0 - l0 * mt) : 0;
    const int64_t hi = single ? std::min<int64_t>(mt, u1 - l0 * mt) : mt;
    for (int64_t ic = lo; ic < hi; ic += chunk)
      for (int64_t l = l0; l < l1; ++l)
        for (int64_t i = ic; i < std::min(hi, ic + chunk); ++i) {
          const int64_t u = l * mt + i;
          if (u >= u0 && u < u1) body(l, i);
        }
    l0 = l1, l1 = l2;
  }
}

// Threads for a problem of `fmas` multiply-adds (as drive() in gemm/driver.h decides).
inline int threads_for(double fmas, int available) {
  if (fmas < (1 << 20)) return 1;  // ~20-40 us on one core: a second thread costs more than it saves
  return std::max(1, available);
}

}  // namespace
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

// The dot-product forward paths: N <= 4 (narrow outputs) and M <= 4 (a batch of 1 to 4).
//
// A GAN discriminator ends in a Linear(hidden, 1) (with its Sigmoid fused for inference), and
// a generator serving one image at a time runs its layers at batch 1. The packed GEMM would
// pad the 1-4 wide side to its 48-wide (N) or 8-tall (M) micro-tile and pack both operands -
// packing W costs more than the product when each weight is used once: fp32 batch 1 ran at
// 0.7-0.9x F.linear, N = 1 at 1/3 of it. Here every output is one dot product of an x row
// and a W row, both read in place along k (stride 1): a tile of kDotRows "long side" rows by
// the 1-4 "short side" rows keeps at most 16 zmm accumulators, each k step loads 16 lanes of
// every row once, and the epilogue reduces each accumulator, adds the bias and applies the
// activation in scalar code. Operands of any of the three dtypes are widened to fp32 as
// loaded. Used for forward-shaped problems only (no prologue).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "../activation.h"
#include "../parallel.h"
#include "epilogue_avx512.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {
namespace {

constexpr int kDotShort = 4, kDotRows = 4;

inline bool dot_applicable(const Problem& p) {
  return p.dact == 0 && (p.N <= kDotShort || p.M <= kDotShort) && p.a.cs == 1 && p.b.rs == 1;
}

// The sum of 16 lanes, once per output: through memory, because GCC 12 warns of an
// uninitialised operand in every 512 -> 256/128-bit extract (_mm512_reduce_add_ps included).
FASTGAN_AVX512_INLINE float sum16(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s[4] = {0.f, 0.f, 0.f, 0.f};
  for (int i = 0; i < 16; ++i) s[i & 3] += t[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// The problem as "long" rows (many) by "short" rows (<= kDotShort), each contiguous along k:
// x rows by W rows when N is small, W rows by x rows when M is small. Output (long i, short j)
// is C[i, j] or C[j, i]; the bias follows the W side.
struct Dots {
  const char* lng;
  int64_t lng_step;  // bytes between long rows
  DType lng_dt;
  const char* shrt;
  int64_t shrt_step;
  DType shrt_dt;
  int64_t nshort, nlong;
  int64_t c_long, c_short;  // C element strides for a long / short index
  bool bias_long;           // bias indexed by the long row (W is the long side)
};

inline Dots dots_of(const Problem& p) {
  const int64_t asz = dtype_size(p.a.dtype), bsz = dtype_size(p.b.dtype);
  const char* a = static_cast<const char*>(p.a.data);
  const char* b = static_cast<const char*>(p.b.data);
  if (p.N <= kDotShort)  // long: x rows m, short: W rows n (B's columns)
    return {a, p.a.rs * asz, p.a.dtype, b, p.b.cs * bsz, p.b.dtype, p.N, p.M, p.ldc, 1, false};
  return {b, p.b.cs * bsz, p.b.dtype, a, p.a.rs * asz, p.a.dtype, p.M, p.N, 1, p.ldc, true};
}

// Long rows [i0, i0 + ROWS) x all S (<= kDotShort) short rows.
template <int ROWS, int S>
FASTGAN_AVX512_TARGET void dot_tile(const Problem& p, const Dots& d, int64_t i0) {
  const int64_t lsz = dtype_size(d.lng_dt), ssz = dtype_size(d.shrt_dt);
  const char* lrow[ROWS];
  const char* srow[S];
  for (int r = 0; r < ROWS; ++r) lrow[r] = d.lng + (i0 + r) * d.lng_step;
  for (int s = 0; s < S; ++s) srow[s] = d.shrt + s * d.shrt_step;
  __m512 acc[ROWS][S];
  for (int r = 0; r < ROWS; ++r)
    for (int s = 0; s < S; ++s) acc[r][s] = _mm512_setzero_ps();
  for (int64_t k = 0; k < p.K; k += 16) {
    const __mmask16 mask = lanes_mask(static_cast<int>(std::min<int64_t>(16, p.K - k)));
    __m512 sv[S];
    for (int s = 0; s < S; ++s) sv[s] = load16(srow[s] + k * ssz, d.shrt_dt, mask);
    for (int r = 0; r < ROWS; ++r) {
      const __m512 lv = load16(lrow[r] + k * lsz, d.lng_dt, mask);
      for (int s = 0; s < S; ++s) acc[r][s] = _mm512_fmadd_ps(lv, sv[s], acc[r][s]);
    }
  }
  const int64_t csz = dtype_size(p.c_dtype);
  char* c = static_cast<char*>(p.c);
  for (int r = 0; r < ROWS; ++r)
    for (int s = 0; s < S; ++s) {
      const float bias = p.bias ? p.bias[d.bias_long ? i0 + r : s] : 0.f;
      const float v = act_ref(p.act, sum16(acc[r][s]) + bias, p.slope);
      store_scalar(c + ((i0 + r) * d.c_long + s * d.c_short) * csz, p.c_dtype, v);
    }
}

template <int S>
void dot_rows(const Problem& p, const Dots& d, int64_t i0, int64_t i1) {
  int64_t i = i0;
  for (; i + kDotRows <= i1; i += kDotRows) dot_tile<kDotRows, S>(p, d, i);
  for (; i < i1; ++i) dot_tile<1, S>(p, d, i);
}

inline void run_dots(const Problem& p) {
  const Dots d = dots_of(p);
  int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (static_cast<double>(p.M) * p.N * p.K < 65536.0) threads = 1;  // not worth a fork-join
  const int64_t grain = std::max<int64_t>(kDotRows, d.nlong / std::max(threads, 1));
  auto rows = [&](int64_t b, int64_t e) {
    switch (d.nshort) {
      case 1: return dot_rows<1>(p, d, b, e);
      case 2: return dot_rows<2>(p, d, b, e);
      case 3: return dot_rows<3>(p, d, b, e);
      default: return dot_rows<4>(p, d, b, e);
    }
  };
  if (threads == 1) return rows(0, d.nlong);
  parallel_for(0, d.nlong, grain, rows);
}

}  // namespace
}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

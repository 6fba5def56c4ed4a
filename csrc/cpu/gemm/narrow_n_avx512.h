// The narrow-output forward path (N <= 4): each C[m, n] is one dot product.
//
// A GAN discriminator ends in a Linear(hidden, 1) (with its Sigmoid fused for inference).
// The packed GEMM would pad that single column to the 48-wide micro-panel - 48x the
// multiply-adds - and pack both operands for a product that reads each weight once: ~3x
// slower than a dot product at 128 x 256 x 1. Here A rows and W rows (B columns) are read in
// place, both contiguous along k: a tile of kRows rows x N columns keeps kRows * N zmm
// accumulators (at most 16), each k step loads 16 lanes of every row and column once, and
// the epilogue reduces each accumulator, adds the bias and applies the activation in scalar
// code (N values per row). Operands of any of the three dtypes are widened to fp32 as loaded.
//
// Used for forward-shaped problems only (no prologue), with A's and B's k stride 1.
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

constexpr int kNarrowN = 4, kNarrowRows = 4;

inline bool narrow_applicable(const Problem& p) {
  return p.dact == 0 && p.N <= kNarrowN && p.a.cs == 1 && p.b.rs == 1;
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

// Rows [m0, m0 + ROWS) x all N (<= kNarrowN) columns.
template <int ROWS, int N>
FASTGAN_AVX512_TARGET void narrow_tile(const Problem& p, int64_t m0) {
  const int64_t asz = dtype_size(p.a.dtype), bsz = dtype_size(p.b.dtype);
  const char* a_row[ROWS];
  const char* b_col[N];
  for (int r = 0; r < ROWS; ++r) a_row[r] = static_cast<const char*>(p.a.data) + (m0 + r) * p.a.rs * asz;
  for (int n = 0; n < N; ++n) b_col[n] = static_cast<const char*>(p.b.data) + n * p.b.cs * bsz;
  __m512 acc[ROWS][N];
  for (int r = 0; r < ROWS; ++r)
    for (int n = 0; n < N; ++n) acc[r][n] = _mm512_setzero_ps();
  for (int64_t k = 0; k < p.K; k += 16) {
    const __mmask16 mask = lanes_mask(static_cast<int>(std::min<int64_t>(16, p.K - k)));
    __m512 w[N];
    for (int n = 0; n < N; ++n) w[n] = load16(b_col[n] + k * bsz, p.b.dtype, mask);
    for (int r = 0; r < ROWS; ++r) {
      const __m512 x = load16(a_row[r] + k * asz, p.a.dtype, mask);
      for (int n = 0; n < N; ++n) acc[r][n] = _mm512_fmadd_ps(x, w[n], acc[r][n]);
    }
  }
  const int64_t csz = dtype_size(p.c_dtype);
  for (int r = 0; r < ROWS; ++r) {
    char* c = static_cast<char*>(p.c) + (m0 + r) * p.ldc * csz;
    for (int n = 0; n < N; ++n) {
      const float s = sum16(acc[r][n]) + (p.bias ? p.bias[n] : 0.f);
      store_scalar(c + n * csz, p.c_dtype, act_ref(p.act, s, p.slope));
    }
  }
}

template <int N>
void narrow_rows(const Problem& p, int64_t m0, int64_t m1) {
  int64_t m = m0;
  for (; m + kNarrowRows <= m1; m += kNarrowRows) narrow_tile<kNarrowRows, N>(p, m);
  for (; m < m1; ++m) narrow_tile<1, N>(p, m);
}

inline void run_narrow(const Problem& p) {
  int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (static_cast<double>(p.M) * p.N * p.K < 65536.0) threads = 1;  // not worth a fork-join
  const int64_t grain = std::max<int64_t>(kNarrowRows, p.M / std::max(threads, 1));
  auto rows = [&](int64_t b, int64_t e) {
    switch (p.N) {
      case 1: return narrow_rows<1>(p, b, e);
      case 2: return narrow_rows<2>(p, b, e);
      case 3: return narrow_rows<3>(p, b, e);
      default: return narrow_rows<4>(p, b, e);
    }
  };
  if (threads == 1) return rows(0, p.M);
  parallel_for(0, p.M, grain, rows);
}

}  // namespace
}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

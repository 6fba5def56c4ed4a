// The int8 GEMM epilogue on AVX2 registers (the AVX2 int8 path, ../int8_avx2.cpp): the same
// contract as epilogue_avx512.h without the VNNI compensation (the AVX2 kernel multiplies
// s8 x s8 directly), on R x V ymm of int32 accumulators (R rows, V vectors of 8 columns):
//     int32 output: store acc                      (the raw accumulator)
//     else y = ((float)acc * x_scale[m]) * w_scale[n] + bias[n], y = act(y), stored as
//       fp32 / bf16 (RNE) / fp16 (RNE), or int8 = clamp(rint(y / out_scale), -127, 127)
//
// The reference's order of fp32 operations is kept: the product before the bias add goes
// through mul_rn, whose empty asm hides it from the optimiser so that it cannot be contracted
// into an FMA (this target has FMA, and GCC contracts by default). The division is the IEEE
// one and vcvtps2dq rounds half to even under the default MXCSR, like std::nearbyint, so
// outputs equal the reference's except where a vector tanh / sigmoid differs from torch's.
//
// Everything is static with the AVX2 target attribute (activation.h); call it from AVX2 code.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "../gemm/io_avx2.h"
#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace avx2 {
using namespace ::fastgan::cpu::avx2;
using ::fastgan::cpu::gemm::avx2_io::first_lanes;

// One tile of output: rows [m0, m0 + rows) x columns [n0, n0 + cols) of the layer.
struct TileCtx {
  int64_t m0 = 0, n0 = 0;
  int rows = 0, cols = 0;
  const Epilogue* e = nullptr;
  int64_t ldo = 0;  // elements between output rows
};

FASTGAN_AVX2_INLINE __m256 mul_rn(__m256 a, __m256 b) {
  __m256 p = _mm256_mul_ps(a, b);
  __asm__("" : "+x"(p));  // opaque: no FMA contraction with the add that follows
  return p;
}

// clamp(rint(v), -127, 127) as int32 lanes; NaN -> 0 (as the reference's float -> int8 cast).
FASTGAN_AVX2_INLINE __m256i round_clamp_127(__m256 v) {
  v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
  v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.f)), _mm256_set1_ps(127.f));
  return _mm256_cvtps_epi32(v);
}

// The first n (0..8) int32 lanes of q (already within int8 range) as bytes at p.
FASTGAN_AVX2_INLINE void store_i8(int8_t* p, __m256i q, int n) {
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  const __m128i b = _mm_packs_epi16(w, w);
  if (n >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), b);
  } else {
    alignas(16) int8_t t[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(t), b);
    std::memcpy(p, t, static_cast<size_t>(n));
  }
}

FASTGAN_AVX2_INLINE void store_i32(int32_t* p, __m256i v, int n) {
  if (n >= 8) _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  else _mm256_maskstore_epi32(reinterpret_cast<int*>(p), first_lanes(n), v);
}

FASTGAN_AVX2_INLINE __m256 load_cols(const float* p, int n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(n));
}

FASTGAN_AVX2_INLINE int out_size(OutKind k) {
  return k == OutKind::kF32 || k == OutKind::kI32 ? 4 : k == OutKind::kI8 ? 1 : 2;
}

FASTGAN_AVX2_INLINE int lanes(int v, int cols) {  // valid columns of vector v (0..8)
  const int n = cols - 8 * v;
  return n < 0 ? 0 : n > 8 ? 8 : n;
}

template <int ACT, int R, int V>
FASTGAN_AVX2_INLINE void finish_float(__m256i (&c)[R][V], const TileCtx& t) {
  const Epilogue& e = *t.e;
  const __m256 slope = _mm256_set1_ps(e.slope), out_scale = _mm256_set1_ps(e.out_scale);
  const int esz = out_size(e.kind);
  const gemm::DType dt = e.kind == OutKind::kBF16 ? gemm::DType::kBF16
                         : e.kind == OutKind::kF16 ? gemm::DType::kF16 : gemm::DType::kF32;
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const int n = lanes(v, t.cols);
    if (n == 0) break;
    const __m256 ws = load_cols(e.w_scale + t.n0 + 8 * v, n);
    const __m256 bias = e.bias ? load_cols(e.bias + t.n0 + 8 * v, n) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= t.rows) break;
      const __m256 xs = _mm256_set1_ps(e.x_scale[e.per_row_scale ? t.m0 + r : 0]);
      __m256 y = mul_rn(_mm256_mul_ps(_mm256_cvtepi32_ps(c[r][v]), xs), ws);
      if (e.bias) y = _mm256_add_ps(y, bias);
      y = act_ps<ACT>(y, slope);
      char* p = static_cast<char*>(e.out) + ((t.m0 + r) * t.ldo + t.n0 + 8 * v) * esz;
      if (e.kind == OutKind::kI8)
        store_i8(reinterpret_cast<int8_t*>(p), round_clamp_127(_mm256_div_ps(y, out_scale)), n);
      else
        gemm::avx2_io::store8(p, dt, y, n);
    }
  }
}

// The end of the AVX2 int8 micro-kernel (see the top of this file).
template <int R, int V>
FASTGAN_AVX2_INLINE void epilogue(__m256i (&c)[R][V], const TileCtx& t) {
  const Epilogue& e = *t.e;
  if (e.kind == OutKind::kI32) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= t.rows) break;
      int32_t* row = static_cast<int32_t*>(e.out) + (t.m0 + r) * t.ldo + t.n0;
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v)
        if (lanes(v, t.cols) > 0) store_i32(row + 8 * v, c[r][v], lanes(v, t.cols));
    }
    return;
  }
  cpu::avx2::dispatch_activation(
      e.act, [&](auto a) FASTGAN_AVX2_INLINE_LAMBDA { finish_float<decltype(a)::value, R, V>(c, t); });
}

}  // namespace avx2
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

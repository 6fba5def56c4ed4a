// The int8 GEMM epilogue on AVX-512 registers, shared by the VNNI micro-kernel (on its
// accumulators directly) and the AMX kernel (row by row after its tile store).
//
//   R x V zmm of int32 accumulators (R rows, V vectors of 16 columns), then
//     acc -= comp[n]                               (VNNI only: the +128 compensation)
//     int32 output: store acc                      (the raw accumulator)
//     else y = ((float)acc * x_scale[m]) * w_scale[n] + bias[n], y = act(y), stored as
//       fp32 / bf16 (RNE) / fp16 (RNE), or int8 = clamp(rint(y / out_scale), -127, 127)
//
// The fp32 arithmetic uses the embedded-rounding forms (_mm512_mul_round_ps, ...): the
// compiler cannot contract them into an FMA, so the result is the reference's, operation for
// operation ((acc * xs) * ws, then + bias, then the IEEE division for int8), and int8
// outputs equal the reference's except where a vector tanh / sigmoid differs from torch's.
//
// Everything is static with the AVX-512 target attribute (activation.h); include it from a
// translation unit that calls it from AVX-512 code.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../activation.h"
#include "../gemm/epilogue_avx512.h"
#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace avx512 {
using namespace ::fastgan::cpu::avx512;
using ::fastgan::cpu::gemm::avx512::lanes_mask;

constexpr int kRN = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// One tile of output: rows [m0, m0 + rows) x columns [n0, n0 + cols) of the layer.
struct TileCtx {
  int64_t m0 = 0, n0 = 0;
  int rows = 0, cols = 0;
  const int32_t* comp = nullptr;  // comp + n0 (VNNI), or null
  const Epilogue* e = nullptr;
  int64_t ldo = 0;                // N
};

FASTGAN_AVX512_INLINE __m512 mul_rn(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kRN); }
FASTGAN_AVX512_INLINE __m512 add_rn(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kRN); }
FASTGAN_AVX512_INLINE __m512 div_rn(__m512 a, __m512 b) { return _mm512_div_round_ps(a, b, kRN); }

// clamp(rint(v), -127, 127) as int32 lanes; NaN -> 0 (as the reference's float -> int8 cast).
FASTGAN_AVX512_INLINE __m512i round_clamp_127(__m512 v) {
  v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
  v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.f)), _mm512_set1_ps(127.f));
  return _mm512_cvt_roundps_epi32(v, kRN);
}

FASTGAN_AVX512_INLINE void store_float(char* p, OutKind kind, __m512 y, __mmask16 m, __m512 out_scale) {
  switch (kind) {
    case OutKind::kF32: _mm512_mask_storeu_ps(p, m, y); break;
    case OutKind::kBF16: _mm256_mask_storeu_epi16(p, m, gemm::avx512::cvt_f32_bf16(y)); break;
    case OutKind::kF16:
      _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      break;
    default: _mm512_mask_cvtepi32_storeu_epi8(p, m, round_clamp_127(div_rn(y, out_scale))); break;
  }
}

FASTGAN_AVX512_INLINE int out_size(OutKind k) {
  return k == OutKind::kF32 || k == OutKind::kI32 ? 4 : k == OutKind::kI8 ? 1 : 2;
}

template <int V>
FASTGAN_AVX512_INLINE __mmask16 vmask(int v, __mmask16 tail) {
  return v == V - 1 ? tail : static_cast<__mmask16>(0xffff);
}

template <int ACT, int R, int V>
FASTGAN_AVX512_INLINE void finish_float(__m512i (&c)[R][V], const TileCtx& t, __mmask16 tail) {
  const Epilogue& e = *t.e;
  __m512 ws[V], bias[V];
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    ws[v] = _mm512_maskz_loadu_ps(vmask<V>(v, tail), e.w_scale + t.n0 + 16 * v);
    if (e.bias) bias[v] = _mm512_maskz_loadu_ps(vmask<V>(v, tail), e.bias + t.n0 + 16 * v);
  }
  const __m512 slope = _mm512_set1_ps(e.slope), out_scale = _mm512_set1_ps(e.out_scale);
  const int esz = out_size(e.kind);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (r >= t.rows) break;
    const __m512 xs = _mm512_set1_ps(e.x_scale[e.per_row_scale ? t.m0 + r : 0]);
    char* row = static_cast<char*>(e.out) + ((t.m0 + r) * t.ldo + t.n0) * esz;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      __m512 y = mul_rn(mul_rn(_mm512_cvtepi32_ps(c[r][v]), xs), ws[v]);
      if (e.bias) y = add_rn(y, bias[v]);
      store_float(row + 16 * v * esz, e.kind, act_ps<ACT>(y, slope), vmask<V>(v, tail), out_scale);
    }
  }
}

// The end of every int8 micro-kernel (see the top of this file).
template <int R, int V>
FASTGAN_AVX512_INLINE void epilogue(__m512i (&c)[R][V], const TileCtx& t) {
  const __mmask16 tail = lanes_mask(t.cols - 16 * (V - 1));
  if (t.comp) {
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __m512i comp = _mm512_loadu_si512(t.comp + 16 * v);  // padded to whole panels
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) c[r][v] = _mm512_sub_epi32(c[r][v], comp);
    }
  }
  const Epilogue& e = *t.e;
  if (e.kind == OutKind::kI32) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= t.rows) break;
      int32_t* row = static_cast<int32_t*>(e.out) + (t.m0 + r) * t.ldo + t.n0;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) _mm512_mask_storeu_epi32(row + 16 * v, vmask<V>(v, tail), c[r][v]);
    }
    return;
  }
  cpu::avx512::dispatch_activation(
      e.act, [&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { finish_float<decltype(a)::value, R, V>(c, t, tail); });
}

}  // namespace avx512
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

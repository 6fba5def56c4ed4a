// AVX-512 loads, stores and the tile epilogue shared by every vector micro-kernel
// (fp32 FMA, bf16 vdpbf16ps, AMX after its tile store) and meant for reuse by the
// block-sparse and int8 kernels:
//
//   load16 / store16   16 lanes of fp32 / bf16 / fp16 memory <-> one fp32 zmm (masked)
//   cvt_f32_bf16       fp32 zmm -> 16 bf16, round to nearest even, NaN kept (AVX512F only)
//   tile_epilogue<R,V> an R x (16 V) tile of zmm accumulators: store fp32 partial sums, or
//                      add bias, apply the activation and store in C's dtype, all while
//                      the tile is still in registers (the activation switch is hoisted
//                      out of the tile, so each case is straight-line code)
//
// Every function is static with the AVX-512 target attribute (see activation.h).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../activation.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their own
// _mm512_undefined_* placeholders (a known false positive); keep the build log clean.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {
using namespace ::fastgan::cpu::avx512;

// Mask of the first n (0..16) lanes.
FASTGAN_AVX512_INLINE __mmask16 lanes_mask(int n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

FASTGAN_AVX512_INLINE __m512 bf16x16_to_f32(__m256i h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

FASTGAN_AVX512_INLINE __m256i cvt_f32_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_blend_epi32(nan, r, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  return _mm512_cvtepi32_epi16(r);
}

// 16 elements at p (masked lanes read nothing and come back 0) as fp32.
FASTGAN_AVX512_INLINE __m512 load16(const void* p, DType dt, __mmask16 m) {
  if (dt == DType::kF32) return _mm512_maskz_loadu_ps(m, p);
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return dt == DType::kBF16 ? bf16x16_to_f32(h) : _mm512_cvtph_ps(h);
}

FASTGAN_AVX512_INLINE void store16(void* p, DType dt, __m512 v, __mmask16 m) {
  if (dt == DType::kF32) {
    _mm512_mask_storeu_ps(p, m, v);
  } else if (dt == DType::kBF16) {
    _mm256_mask_storeu_epi16(p, m, cvt_f32_bf16(v));
  } else {
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

// 16 elements as bf16 bits; with the prologue (act != 0) g = x * act'(y) is formed in
// fp32 and rounded once.
FASTGAN_AVX512_INLINE __m256i load16_bf16_bits(const char* p, DType dt, __mmask16 m) {
  if (dt == DType::kBF16) return _mm256_maskz_loadu_epi16(m, p);
  return cvt_f32_bf16(load16(p, dt, m));
}

// Column masks of a tile of V vectors holding `cols` valid columns: all lanes but the last.
template <int V>
FASTGAN_AVX512_INLINE __mmask16 col_mask(int v, __mmask16 tail) {
  return v == V - 1 ? tail : static_cast<__mmask16>(0xffff);
}

template <int R, int V>
FASTGAN_AVX512_INLINE void tile_load_acc(__m512 (&c)[R][V], const TileOut& o, __mmask16 tail) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      c[r][v] = r < o.rows ? _mm512_maskz_loadu_ps(col_mask<V>(v, tail), o.acc + r * o.ld_acc + 16 * v)
                           : _mm512_setzero_ps();
}

template <int ACT, int R, int V>
FASTGAN_AVX512_INLINE void tile_finish(__m512 (&c)[R][V], const TileOut& o, __mmask16 tail) {
  __m512 bias[V];
  const __m512 slope = _mm512_set1_ps(o.slope);
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v)
    bias[v] = o.bias ? _mm512_maskz_loadu_ps(col_mask<V>(v, tail), o.bias + 16 * v) : _mm512_setzero_ps();
  const int64_t esz = dtype_size(o.dtype);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (r >= o.rows) break;
    char* row = static_cast<char*>(o.out) + r * o.ldc * esz;
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) {
      const __m512 z = act_ps<ACT>(_mm512_add_ps(c[r][v], bias[v]), slope);
      store16(row + 16 * v * esz, o.dtype, z, col_mask<V>(v, tail));
    }
  }
}

// The end of every micro-kernel: fp32 partial sums, or the fused epilogue.
template <int R, int V>
FASTGAN_AVX512_INLINE void tile_epilogue(__m512 (&c)[R][V], const TileOut& o, __mmask16 tail) {
  if (!o.last) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) _mm512_mask_storeu_ps(o.acc + r * o.ld_acc + 16 * v, col_mask<V>(v, tail), c[r][v]);
    }
    return;
  }
  cpu::avx512::dispatch_activation(
      o.act, [&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { tile_finish<decltype(a)::value, R, V>(c, o, tail); });
}

}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

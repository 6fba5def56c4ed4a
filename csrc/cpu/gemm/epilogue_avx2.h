// AVX2 + FMA loads, stores and the tile epilogue shared by the AVX2 micro-kernels (the
// dense 6 x 16 GEMM kernel, gemm_avx2_f32.cpp; the block-sparse tiles, bsr/tile_avx2.h)
// and the AVX2 bias-gradient column sums:
//
//   first_lanes        all-ones in the first n (0..8) lanes (AVX2 has no mask registers)
//   load8 / store8     8 lanes of fp32 / bf16 / fp16 memory <-> one fp32 ymm; tails that
//                      maskload cannot reach for 16-bit data go through a small buffer
//   tile_epilogue<R,V> an R x (8 V) tile of ymm accumulators: store fp32 partial sums, or
//                      add bias, apply the activation and store in C's dtype, all while
//                      the tile is still in registers (activation switch hoisted out)
//
// The AVX2 counterpart of epilogue_avx512.h; every function is static with the AVX2
// target attribute (see activation.h).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx2 {
using namespace ::fastgan::cpu::avx2;

FASTGAN_AVX2_INLINE __m256i first_lanes(int n) {  // all-ones in the first n (0..8) lanes
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// n (0..8) elements at p as fp32, the rest 0.
FASTGAN_AVX2_INLINE __m256 load8(const char* p, DType dt, int n) {
  if (n >= 8) {
    if (dt == DType::kF32) return _mm256_loadu_ps(reinterpret_cast<const float*>(p));
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return dt == DType::kBF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                              : _mm256_cvtph_ps(h);
  }
  if (dt == DType::kF32) return _mm256_maskload_ps(reinterpret_cast<const float*>(p), first_lanes(n));
  alignas(32) float t[8] = {};
  for (int i = 0; i < n; ++i) t[i] = load_scalar(p + 2 * i, dt);
  return _mm256_load_ps(t);
}

FASTGAN_AVX2_INLINE __m128i cvt8_bf16(__m256 v) {  // round to nearest even, NaN kept
  const __m256i u = _mm256_castps_si256(v), hi = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
  r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)),
                         _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}

// The first n (0..8) lanes of v to p in dtype dt.
FASTGAN_AVX2_INLINE void store8(char* p, DType dt, __m256 v, int n) {
  if (dt == DType::kF32) {
    if (n >= 8) _mm256_storeu_ps(reinterpret_cast<float*>(p), v);
    else _mm256_maskstore_ps(reinterpret_cast<float*>(p), first_lanes(n), v);
    return;
  }
  const __m128i h = dt == DType::kBF16 ? cvt8_bf16(v) : _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
  if (n >= 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
  } else {
    alignas(16) uint16_t t[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(t), h);
    std::memcpy(p, t, 2 * n);
  }
}

// Valid lanes of vector v of a tile `cols` wide (0..8).
FASTGAN_AVX2_INLINE int vec_lanes(int cols, int v) {
  const int n = cols - 8 * v;
  return n < 0 ? 0 : n < 8 ? n : 8;
}

// Zero (TileOut::first), or the fp32 partial sums of an earlier k block.
template <int R, int V>
FASTGAN_AVX2_INLINE void tile_start(__m256 (&c)[R][V], const TileOut& o) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      c[r][v] = (o.first || r >= o.rows)
                    ? _mm256_setzero_ps()
                    : _mm256_maskload_ps(o.acc + r * o.ld_acc + 8 * v, first_lanes(vec_lanes(o.cols, v)));
}

template <int ACT, int R, int V>
FASTGAN_AVX2_INLINE void tile_finish(__m256 (&c)[R][V], const TileOut& o) {
  const __m256 slope = _mm256_set1_ps(o.slope);
  const int64_t esz = dtype_size(o.dtype);
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const int n = vec_lanes(o.cols, v);
    const __m256 b = o.bias ? _mm256_maskload_ps(o.bias + 8 * v, first_lanes(n)) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
      const __m256 z = act_ps<ACT>(_mm256_add_ps(c[r][v], b), slope);
      store8(static_cast<char*>(o.out) + (r * o.ldc + 8 * v) * esz, o.dtype, z, n);
    }
  }
}

// The end of every AVX2 micro-kernel: fp32 partial sums, or the fused epilogue.
template <int R, int V>
FASTGAN_AVX2_INLINE void tile_epilogue(__m256 (&c)[R][V], const TileOut& o) {
  if (!o.last) {  // (fully unrolled loops keep c[][] in registers)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        store8(reinterpret_cast<char*>(o.acc + r * o.ld_acc + 8 * v), DType::kF32, c[r][v], vec_lanes(o.cols, v));
    }
    return;
  }
  cpu::avx2::dispatch_activation(
      o.act, [&](auto a) FASTGAN_AVX2_INLINE_LAMBDA { tile_finish<decltype(a)::value, R, V>(c, o); });
}

}  // namespace avx2
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

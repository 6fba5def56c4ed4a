// AVX2 loads and stores of 8 fp32 lanes in the GEMM dtypes (fp32, bf16, fp16), with the
// partial vectors of tiles' edges: shared by the fp32 AVX2 GEMM (gemm_avx2_f32.cpp) and the
// AVX2 int8 epilogue (int8/epilogue_avx2.h). bf16 rounds to nearest even (NaN stays NaN),
// fp16 through vcvtps2ph with the same rounding, so both match the scalar store_scalar.
//
// Everything is static with the AVX2 target attribute (activation.h): call it from AVX2 code.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "gemm.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx2_io {

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

}  // namespace avx2_io
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

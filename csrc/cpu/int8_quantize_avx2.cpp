// AVX2 quantisers (per token and per tensor) for CPUs without AVX-512, bit-exact with the
// references of fastgan_kernels/ops/int8_linear.py, int8_portable.cpp and int8_avx512.cpp:
//
//   per token:  pass 1 over the row: amax as an unsigned max of |x|'s bits (vpand + vpmaxud),
//               which also flags NaN / Inf (their bits are >= 0x7f800000);
//               scale = amax / 127 (1/127 for a zero row);
//               pass 2 while the row is still in L1 / L2: q = clamp(rint(x / scale), -127, 127)
//               with the IEEE division (vdivps) and round half to even (vcvtps2dq);
//   per tensor: one pass: the same division and rounding with the given scale, with the same
//               bit max along the way for the non-finite check.
//
// bf16 / fp16 inputs are widened to fp32 exactly on load; rows with a non-unit inner stride
// are first gathered into a per-thread fp32 buffer.
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "activation.h"
#include "gemm/io_avx2.h"
#include "int8/epilogue_avx2.h"
#include "int8/quantize_rows.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

// k .. k + n (n <= 8) of a row as fp32 (InType and gemm::DType share their codes).
FASTGAN_AVX2_INLINE __m256 load8(const char* row, InType dt, int64_t k, int n) {
  const int esz = dt == InType::kF32 ? 4 : 2;
  return gemm::avx2_io::load8(row + k * esz, static_cast<gemm::DType>(dt), n);
}

FASTGAN_AVX2_INLINE __m256i abs_bits(__m256 v) {
  return _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff));
}

FASTGAN_AVX2_INLINE uint32_t reduce_max(__m256i m) {
  __m128i x = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0x4e));
  x = _mm_max_epu32(x, _mm_shuffle_epi32(x, 0xb1));
  return static_cast<uint32_t>(_mm_cvtsi128_si32(x));
}

FASTGAN_AVX2_INLINE int chunk(int64_t K, int64_t k) { return static_cast<int>(K - k < 8 ? K - k : 8); }

// q[k] for k < K of one contiguous row; returns the max of |x|'s bits.
FASTGAN_AVX2_INLINE uint32_t quantize_row(const char* row, InType dt, int64_t K, __m256 scale, int8_t* q) {
  __m256i mx = _mm256_setzero_si256();
  for (int64_t k = 0; k < K; k += 8) {
    const int n = chunk(K, k);
    const __m256 v = load8(row, dt, k, n);
    mx = _mm256_max_epu32(mx, abs_bits(v));
    avx2::store_i8(q + k, avx2::round_clamp_127(_mm256_div_ps(v, scale)), n);
  }
  return reduce_max(mx);
}

FASTGAN_AVX2_INLINE uint32_t row_amax_bits(const char* row, InType dt, int64_t K) {
  __m256i mx0 = _mm256_setzero_si256(), mx1 = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    mx0 = _mm256_max_epu32(mx0, abs_bits(load8(row, dt, k, 8)));
    mx1 = _mm256_max_epu32(mx1, abs_bits(load8(row, dt, k + 8, 8)));
  }
  for (; k < K; k += 8) mx0 = _mm256_max_epu32(mx0, abs_bits(load8(row, dt, k, chunk(K, k))));
  return reduce_max(_mm256_max_epu32(mx0, mx1));
}

FASTGAN_AVX2_TARGET uint32_t amax_bits_avx2(const void* row, InType dt, int64_t K) {
  return row_amax_bits(static_cast<const char*>(row), dt, K);
}

FASTGAN_AVX2_TARGET uint32_t quantize_avx2(const void* row, InType dt, int64_t K, float scale, int8_t* q) {
  return quantize_row(static_cast<const char*>(row), dt, K, _mm256_set1_ps(scale), q);
}

}  // namespace

int64_t quantize_rows_avx2(const QuantArgs& a, int64_t m0, int64_t m1) {
  static const RowQuantizer rq{&amax_bits_avx2, &quantize_avx2};
  return quantize_rows_with(a, m0, m1, rq);
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t quantize_rows_avx2(const QuantArgs& a, int64_t m0, int64_t m1) { return quantize_rows_portable(a, m0, m1); }
}}}
#endif

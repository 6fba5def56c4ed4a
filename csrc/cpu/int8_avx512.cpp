// AVX-512 quantisers (per token and per tensor), bit-exact with the references of
// fastgan_kernels/ops/int8_linear.py and with int8_portable.cpp:
//
//   per token:  pass 1 over the row: amax as an unsigned max of |x|'s bits (vpandd + vpmaxud),
//               which also flags NaN / Inf for free (their bits are >= 0x7f800000);
//               scale = amax / 127 (1/127 for a zero row);
//               pass 2 while the row is still in L1 / L2: q = clamp(rint(x / scale), -127, 127)
//               with the IEEE division (vdivps {rn-sae}) and round half to even;
//   per tensor: one pass: the same division and rounding with the given scale, with the same
//               bit max along the way for the non-finite check.
//
// bf16 / fp16 inputs are widened to fp32 exactly on load; rows with a non-unit inner stride
// are first gathered into a per-thread fp32 buffer.
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "activation.h"
#include "gemm/epilogue_avx512.h"
#include "int8/epilogue_avx512.h"
#include "int8/quantize_rows.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

using gemm::avx512::lanes_mask;

FASTGAN_AVX512_INLINE __m512 load16(const void* p, InType dt, __mmask16 m) {
  if (dt == InType::kF32) return _mm512_maskz_loadu_ps(m, p);
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return dt == InType::kBF16 ? gemm::avx512::bf16x16_to_f32(h) : _mm512_cvtph_ps(h);
}

FASTGAN_AVX512_INLINE __m512i abs_bits(__m512 v) {
  return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff));
}

// q[k] for k < K of one contiguous row; returns the max of |x|'s bits.
FASTGAN_AVX512_INLINE uint32_t quantize_row(const void* x, InType dt, int64_t K, __m512 scale, int8_t* q) {
  const int esz = dt == InType::kF32 ? 4 : 2;
  const char* p = static_cast<const char*>(x);
  __m512i mx = _mm512_setzero_si512();
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = lanes_mask(static_cast<int>(K - k < 16 ? K - k : 16));
    const __m512 v = load16(p + k * esz, dt, m);
    mx = _mm512_max_epu32(mx, abs_bits(v));
    _mm512_mask_cvtepi32_storeu_epi8(q + k, m, avx512::round_clamp_127(avx512::div_rn(v, scale)));
  }
  return _mm512_reduce_max_epu32(mx);
}

FASTGAN_AVX512_INLINE uint32_t row_amax_bits(const void* x, InType dt, int64_t K) {
  const int esz = dt == InType::kF32 ? 4 : 2;
  const char* p = static_cast<const char*>(x);
  __m512i mx0 = _mm512_setzero_si512(), mx1 = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 32 <= K; k += 32) {
    mx0 = _mm512_max_epu32(mx0, abs_bits(load16(p + k * esz, dt, 0xffff)));
    mx1 = _mm512_max_epu32(mx1, abs_bits(load16(p + (k + 16) * esz, dt, 0xffff)));
  }
  for (; k < K; k += 16) {
    const __mmask16 m = lanes_mask(static_cast<int>(K - k < 16 ? K - k : 16));
    mx0 = _mm512_max_epu32(mx0, abs_bits(load16(p + k * esz, dt, m)));
  }
  return _mm512_reduce_max_epu32(_mm512_max_epu32(mx0, mx1));
}

FASTGAN_AVX512_TARGET uint32_t amax_bits_avx512(const void* row, InType dt, int64_t K) {
  return row_amax_bits(row, dt, K);
}

FASTGAN_AVX512_TARGET uint32_t quantize_avx512(const void* row, InType dt, int64_t K, float scale, int8_t* q) {
  return quantize_row(row, dt, K, _mm512_set1_ps(scale), q);
}

}  // namespace

int64_t quantize_rows_avx512(const QuantArgs& a, int64_t m0, int64_t m1) {
  static const RowQuantizer rq{&amax_bits_avx512, &quantize_avx512};
  return quantize_rows_with(a, m0, m1, rq);
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t quantize_rows_avx512(const QuantArgs& a, int64_t m0, int64_t m1) { return quantize_rows_portable(a, m0, m1); }
}}}
#endif

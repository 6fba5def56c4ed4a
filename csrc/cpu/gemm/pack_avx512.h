// AVX-512 packers (layouts as in pack_portable.h). Each has two fast cases and falls
// back to the scalar packer for anything else (steps, zero strides):
//
//   k contiguous (ks == 1)     e.g. x [M,K] row-major as A, W [N,K] as B of the forward:
//                              16 k of 8 lanes are loaded, converted, multiplied by the
//                              prologue, and transposed 8 x 8 (fp32 words or bf16 pairs)
//   lanes contiguous (ls == 1) e.g. grad_out^T as A and x as B of grad_weight, W as B of
//                              grad_x, transposed views: 16 lanes per vector, no transpose
//
// The prologue's y must have the same fast case as A; otherwise the scalar path runs.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "epilogue_avx512.h"
#include "pack_portable.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {

// In: r[i] = 8 consecutive k of lane i. Out: r[j] = lanes 0..7 of k j.
FASTGAN_AVX512_INLINE void transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// 16 elements of the operand at p (and of y at q under the prologue) as fp32.
FASTGAN_AVX512_INLINE __m512 load16_pro(const char* p, DType dt, const Prologue& pro, const char* q, __mmask16 m) {
  const __m512 v = load16(p, dt, m);
  if (pro.act == kIdentity) return v;
  return grad_from_output_ps(pro.act, v, load16(q, pro.y.dt, m), _mm512_set1_ps(pro.slope));
}

// Which fast case applies to this operand (and its prologue source).
enum class Case { kGeneric, kContiguousK, kContiguousLanes };
FASTGAN_AVX512_INLINE Case pack_case(const Operand& src, const Prologue& pro, int lanes, int64_t kc) {
  const bool y = pro.act != kIdentity;
  if ((src.ks == 1 || kc == 1) && (!y || pro.y.ks == 1 || kc == 1)) return Case::kContiguousK;
  if ((src.ls == 1 || lanes == 1) && (!y || pro.y.ls == 1 || lanes == 1)) return Case::kContiguousLanes;
  return Case::kGeneric;
}

// Loads 8 lanes x 16 k starting at k0, as 2 x 8 ymm rows of 32-bit words: fp32 values
// (kPairs false) or bf16 pairs (kPairs true: 16 k = 8 words, only `lo` is filled).
template <bool kPairs>
FASTGAN_AVX512_INLINE void load_lanes8(const Operand& src, const Prologue& pro, int64_t l0, int nl, int64_t k0,
                                       __mmask16 m, __m256 (&lo)[8], __m256 (&hi)[8]) {
  const int64_t sz = dtype_size(src.dt), ysz = dtype_size(pro.y.dt);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    if (i >= nl) {
      lo[i] = hi[i] = _mm256_setzero_ps();
      continue;
    }
    const char* p = src.base + ((l0 + i) * src.ls + k0) * sz;
    const char* q = pro.act ? pro.y.base + ((l0 + i) * pro.y.ls + k0) * ysz : nullptr;
    if (kPairs) {
      const __m256i w = (pro.act == kIdentity) ? load16_bf16_bits(p, src.dt, m)
                                               : cvt_f32_bf16(load16_pro(p, src.dt, pro, q, m));
      lo[i] = _mm256_castsi256_ps(w);
    } else {
      const __m512 v = load16_pro(p, src.dt, pro, q, m);
      lo[i] = _mm512_castps512_ps256(v);
      hi[i] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    }
  }
}

// fp32 panel dst[k * P + l], P a multiple of 8.
template <int P>
static FASTGAN_AVX512_TARGET void pack_f32(const Operand& src, const Prologue& pro, int lanes, int64_t kc,
                                           float* dst) {
  static_assert(P % 8 == 0, "fp32 panels are made of 8-lane groups");
  switch (pack_case(src, pro, lanes, kc)) {
    case Case::kContiguousK:
      for (int64_t l0 = 0; l0 < P; l0 += 8) {
        const int nl = static_cast<int>(lanes - l0);
        if (nl <= 0) {
          for (int64_t k = 0; k < kc; ++k) _mm256_store_ps(dst + k * P + l0, _mm256_setzero_ps());
          continue;
        }
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
          const int nk = static_cast<int>(kc - k0 < 16 ? kc - k0 : 16);
          __m256 lo[8], hi[8];
          load_lanes8<false>(src, pro, l0, nl, k0, lanes_mask(nk), lo, hi);
          transpose8x8(lo);
          transpose8x8(hi);
          for (int j = 0; j < 8 && j < nk; ++j) _mm256_store_ps(dst + (k0 + j) * P + l0, lo[j]);
          for (int j = 0; j + 8 < nk; ++j) _mm256_store_ps(dst + (k0 + 8 + j) * P + l0, hi[j]);
        }
      }
      return;
    case Case::kContiguousLanes: {
      const int64_t sz = dtype_size(src.dt), ysz = dtype_size(pro.y.dt);
      for (int64_t k = 0; k < kc; ++k) {
#pragma GCC unroll 4
        for (int l0 = 0; l0 < P; l0 += 16) {
          const __mmask16 m = lanes_mask(lanes - l0);
          const char* p = src.base + (l0 + k * src.ks) * sz;
          const char* q = pro.act ? pro.y.base + (l0 + k * pro.y.ks) * ysz : nullptr;
          const __m512 v = m ? load16_pro(p, src.dt, pro, q, m) : _mm512_setzero_ps();
          if (P - l0 >= 16) _mm512_store_ps(dst + k * P + l0, v);
          else _mm256_store_ps(dst + k * P + l0, _mm512_castps512_ps256(v));
        }
      }
      return;
    }
    default:
      pack_generic<PanelF32>(src, pro, P, lanes, kc, kc, dst);
  }
}

// bf16 k-pair panel: 32-bit word (l, k/2) at dst32[(k/2) * P + l]; k in [kc, kcp) is zero
// (kcp is kc rounded up to the kernel's k unit: 2 for vdpbf16ps, 32 for AMX). P a
// multiple of 8.
template <int P>
static FASTGAN_AVX512_TARGET void pack_pairs(const Operand& src, const Prologue& pro, int lanes, int64_t kc,
                                             int64_t kcp, uint16_t* dst) {
  static_assert(P % 8 == 0, "pair panels are made of 8-lane groups");
  float* dw = reinterpret_cast<float*>(dst);  // 32-bit words, moved as floats
  const int64_t kp_count = kcp / 2;
  switch (pack_case(src, pro, lanes, kc)) {
    case Case::kContiguousK:
      for (int64_t l0 = 0; l0 < P; l0 += 8) {
        const int nl = static_cast<int>(lanes - l0);
        if (nl <= 0) {
          for (int64_t kp = 0; kp < kp_count; ++kp) _mm256_store_ps(dw + kp * P + l0, _mm256_setzero_ps());
          continue;
        }
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
          const int nk = static_cast<int>(kc - k0 < 16 ? kc - k0 : 16);
          __m256 w[8], unused[8];
          load_lanes8<true>(src, pro, l0, nl, k0, lanes_mask(nk), w, unused);
          transpose8x8(w);
          for (int j = 0; 2 * j < nk; ++j) _mm256_store_ps(dw + (k0 / 2 + j) * P + l0, w[j]);
        }
        for (int64_t kp = (kc + 1) / 2; kp < kp_count; ++kp) _mm256_store_ps(dw + kp * P + l0, _mm256_setzero_ps());
      }
      return;
    case Case::kContiguousLanes: {
      const int64_t sz = dtype_size(src.dt), ysz = dtype_size(pro.y.dt);
      for (int64_t kp = 0; kp < kp_count; ++kp) {
        const int64_t k = 2 * kp;
        const bool has_even = k < kc, has_odd = k + 1 < kc;  // k >= kc: zero padding (AMX)
#pragma GCC unroll 4
        for (int l0 = 0; l0 < P; l0 += 16) {
          const __mmask16 m = lanes_mask(lanes - l0);
          __m512i words = _mm512_setzero_si512();
          if (m && has_even) {
            __m256i e, o = _mm256_setzero_si256();
            const char* p = src.base + (l0 + k * src.ks) * sz;
            const char* q = pro.act ? pro.y.base + (l0 + k * pro.y.ks) * ysz : nullptr;
            if (pro.act == kIdentity) {
              e = load16_bf16_bits(p, src.dt, m);
              if (has_odd) o = load16_bf16_bits(p + src.ks * sz, src.dt, m);
            } else {
              e = cvt_f32_bf16(load16_pro(p, src.dt, pro, q, m));
              if (has_odd) o = cvt_f32_bf16(load16_pro(p + src.ks * sz, src.dt, pro, q + pro.y.ks * ysz, m));
            }
            words = _mm512_or_si512(_mm512_cvtepu16_epi32(e), _mm512_slli_epi32(_mm512_cvtepu16_epi32(o), 16));
          }
          if (P - l0 >= 16) _mm512_store_si512(dw + kp * P + l0, words);
          else _mm256_store_si256(reinterpret_cast<__m256i*>(dw + kp * P + l0), _mm512_castsi512_si256(words));
        }
      }
      return;
    }
    default:
      pack_generic<PairsBF16>(src, pro, P, lanes, kc, kcp, dst);
  }
}

}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

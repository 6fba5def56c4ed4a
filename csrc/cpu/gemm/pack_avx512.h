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
#include "pack_avx2.h"
#include "pack_portable.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {

// In: r[i] = 8 consecutive k of lane i. Out: r[j] = lanes 0..7 of k j. (AVX code, shared
// with the AVX2 packer; inlines into the AVX-512 functions, whose target includes AVX2.)
using ::fastgan::cpu::gemm::avx2::transpose8x8;

// 16 elements of a DT operand at p (and of y at q under the prologue) as fp32.
template <DType DT>
FASTGAN_AVX512_INLINE __m512 load16t(const void* p, __mmask16 m) {
  if constexpr (DT == DType::kF32) return _mm512_maskz_loadu_ps(m, p);
  else if constexpr (DT == DType::kBF16) return bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, p));
  else return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
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

// The k-contiguous case of both panel kinds: 8 lanes x 16 k at a time are loaded as
// 32-bit words (fp32 values, or bf16 pairs when kPairs), transposed 8 x 8 and stored as
// rows of the panel. DT is the source dtype, PRO whether the prologue applies.
template <int P, bool kPairs, DType DT, bool PRO>
static FASTGAN_AVX512_TARGET void pack_kcontig(const Operand src, const Prologue pro, int lanes, int64_t kc,
                                               int64_t kcp, float* dst) {
  constexpr int64_t sz = DT == DType::kF32 ? 4 : 2;
  const int64_t ls = src.ls, yls = pro.y.ls, ysz = dtype_size(pro.y.dt);
  const DType ydt = pro.y.dt;
  const int act = pro.act;
  const __m512 slope = _mm512_set1_ps(pro.slope);
  const int64_t rows_out = kPairs ? kcp / 2 : kc;  // panel rows: k, or k pairs
  for (int64_t l0 = 0; l0 < P; l0 += 8) {
    const int nl = static_cast<int>(lanes - l0);
    int64_t r0 = 0;  // panel rows written so far
    if (nl > 0) {
      for (int64_t k0 = 0; k0 < kc; k0 += 16) {
        const int nk = static_cast<int>(kc - k0 < 16 ? kc - k0 : 16);
        const __mmask16 m = lanes_mask(nk);
        // The rows are read across, so the hardware prefetchers see 8 short streams at a
        // time: fetch the next 8 lanes' chunk now, ~one group (~1000 cycles) ahead of use.
        // Past the panel this is the next panel's first group; a prefetch never faults,
        // and the address is formed as an integer.
        const uintptr_t next = reinterpret_cast<uintptr_t>(src.base) + ((l0 + 8) * ls + k0) * sz;
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) _mm_prefetch(reinterpret_cast<const char*>(next + i * ls * sz), _MM_HINT_T0);
        __m256 lo[8], hi[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          if (i >= nl) {
            lo[i] = hi[i] = _mm256_setzero_ps();
            continue;
          }
          const char* p = src.base + ((l0 + i) * ls + k0) * sz;
          if (kPairs && DT == DType::kBF16 && !PRO) {
            lo[i] = _mm256_castsi256_ps(_mm256_maskz_loadu_epi16(m, p));
            continue;
          }
          __m512 v = load16t<DT>(p, m);
          if (PRO) v = grad_from_output_ps(act, v, load16(pro.y.base + ((l0 + i) * yls + k0) * ysz, ydt, m), slope);
          if (kPairs) {
            lo[i] = _mm256_castsi256_ps(cvt_f32_bf16(v));
          } else {
            lo[i] = _mm512_castps512_ps256(v);
            hi[i] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
          }
        }
        float* d = dst + r0 * P + l0;
        transpose8x8(lo);
        const int n_lo = kPairs ? (nk + 1) / 2 : (nk < 8 ? nk : 8);
        if (n_lo == 8) {
#pragma GCC unroll 8
          for (int j = 0; j < 8; ++j) _mm256_store_ps(d + j * P, lo[j]);
        } else {
          for (int j = 0; j < n_lo; ++j) _mm256_store_ps(d + j * P, lo[j]);
        }
        r0 += n_lo;
        if (!kPairs && nk > 8) {
          transpose8x8(hi);
          if (nk == 16) {
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) _mm256_store_ps(d + (8 + j) * P, hi[j]);
          } else {
            for (int j = 0; j < nk - 8; ++j) _mm256_store_ps(d + (8 + j) * P, hi[j]);
          }
          r0 += nk - 8;
        }
      }
    }
    for (; r0 < rows_out; ++r0) _mm256_store_ps(dst + r0 * P + l0, _mm256_setzero_ps());
  }
}

template <int P, bool kPairs>
FASTGAN_AVX512_INLINE void pack_kcontig_dispatch(const Operand& src, const Prologue& pro, int lanes, int64_t kc,
                                                 int64_t kcp, float* dst) {
  const bool y = pro.act != kIdentity;
  switch (src.dt) {
    case DType::kBF16:
      return y ? pack_kcontig<P, kPairs, DType::kBF16, true>(src, pro, lanes, kc, kcp, dst)
               : pack_kcontig<P, kPairs, DType::kBF16, false>(src, pro, lanes, kc, kcp, dst);
    case DType::kF16:
      return y ? pack_kcontig<P, kPairs, DType::kF16, true>(src, pro, lanes, kc, kcp, dst)
               : pack_kcontig<P, kPairs, DType::kF16, false>(src, pro, lanes, kc, kcp, dst);
    default:
      return y ? pack_kcontig<P, kPairs, DType::kF32, true>(src, pro, lanes, kc, kcp, dst)
               : pack_kcontig<P, kPairs, DType::kF32, false>(src, pro, lanes, kc, kcp, dst);
  }
}

// fp32 panel dst[k * P + l], P a multiple of 8.
template <int P>
static FASTGAN_AVX512_TARGET void pack_f32(const Operand& src, const Prologue& pro, int lanes, int64_t kc,
                                           float* dst) {
  static_assert(P % 8 == 0, "fp32 panels are made of 8-lane groups");
  switch (pack_case(src, pro, lanes, kc)) {
    case Case::kContiguousK:
      return pack_kcontig_dispatch<P, false>(src, pro, lanes, kc, kc, dst);
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
      return pack_kcontig_dispatch<P, true>(src, pro, lanes, kc, kcp, dw);
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

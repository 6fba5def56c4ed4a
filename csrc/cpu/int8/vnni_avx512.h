// The AVX512-VNNI building blocks shared by the dense int8 GEMM (int8_vnni.cpp) and the
// block-sparse int8 GEMM (bsr_int8_vnni.cpp): the A packing into 8-row micro-panels of
// x ^ 0x80 (u8) and the vpdpbusd k loop over 16-column weight panels.
//
// A micro-panel: [kgs][8][4] bytes, row r's 4-byte group kg at kg * 32 + r * 4, so a run of
// consecutive k groups (a dense K, or one block column of a block-sparse weight) is
// contiguous. B panel: [kgs][16][4] int8 (int8/packed_weight.h), one zmm per k group.
//
// GCC 12 keeps the _mm512_dpbusd_epi32 accumulators of an unrolled tile in memory (a
// store / reload per instruction); the one-instruction asm below keeps them in registers.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "../parallel.h"
#include "int8.h"
#include "pack_a.h"

#define FASTGAN_VNNI_FEATURES FASTGAN_AVX512_FEATURES ",avx512vnni"
#define FASTGAN_VNNI_TARGET __attribute__((target(FASTGAN_VNNI_FEATURES)))
#define FASTGAN_VNNI_INLINE static inline __attribute__((always_inline, target(FASTGAN_VNNI_FEATURES)))

namespace fastgan {
namespace cpu {
namespace int8 {
namespace vnni {

constexpr int kMR = 8;  // rows of an A micro-panel (and of every VNNI register tile)

FASTGAN_VNNI_INLINE __m512i dpbusd(__m512i acc, __m512i a_u8, __m512i b_s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a_u8), "v"(b_s8));
  return acc;
}

typedef int32_t __attribute__((may_alias, aligned(1))) i32_alias;

// One row of A (element k at src[k * cs]) into its place `d` of an A micro-panel.
// (The packers are not always_inline: the callers' parallel lambdas have no VNNI target.)
static FASTGAN_VNNI_TARGET void pack_a_row(const int8_t* src, int64_t cs, int64_t K, uint8_t* d) {
  int64_t k = 0;
  if (cs == 1) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    // 16 groups of 4 k at a time: 64 bytes in, 16 scattered 4-byte words out (the tail
    // masked: its missing bytes become 0x80, i.e. x = 0).
    for (; k < K; k += 64) {
      const int64_t left = K - k;
      const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
      alignas(64) int32_t w[16];
      _mm512_store_si512(w, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, src + k), flip));
      uint8_t* dk = d + (k / kGroup) * (kMR * kGroup);
      const int64_t groups = left >= 64 ? 16 : ceil_div(left, kGroup);
      for (int j = 0; j < groups; ++j) *reinterpret_cast<i32_alias*>(dk + j * kMR * kGroup) = w[j];
    }
  }
  for (; k < K; ++k) d[(k / kGroup) * (kMR * kGroup) + k % kGroup] = static_cast<uint8_t>(src[k * cs]) ^ 0x80u;
}

// All of A as ceil(M / 8) micro-panels of `kgs` k groups each (kgs * 4 >= K; the groups past K
// are zero: any value would do, the weight is zero there, and the padded rows are not stored),
// packed in parallel into the calling thread's scratch (pack_a.h). Returns the first row of a
// float A holding NaN / Inf, or -1.
inline int64_t pack_a(const GemmArgs& g, int64_t kgs, uint8_t** apack) {
  void* out = nullptr;
  const int64_t bad = pack_a_panels(g, kMR, kgs * kMR * kGroup, &out,
                                    [&](const int8_t* src, int64_t cs, void* panel, int r) {
                                      pack_a_row(src, cs, g.K, static_cast<uint8_t*>(panel) + r * kGroup);
                                    });
  *apack = static_cast<uint8_t*>(out);
  return bad;
}

// c[r][v] += sum over kgs k groups of A rows r (micro-panel `a`) x B panel v (at b + v * pb).
template <int R, int V>
FASTGAN_VNNI_INLINE void accumulate(__m512i (&c)[R][V], int64_t kgs, const uint8_t* a, const int8_t* b, int64_t pb) {
#pragma GCC unroll 2
  for (int64_t kg = 0; kg < kgs; ++kg) {
    __m512i bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm512_loadu_si512(b + v * pb);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i ar = _mm512_set1_epi32(*reinterpret_cast<const i32_alias*>(a + r * kGroup));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) c[r][v] = dpbusd(c[r][v], ar, bv[v]);
    }
    a += kMR * kGroup;
    b += kPanel * kGroup;
  }
}

template <int R, int V>
FASTGAN_VNNI_INLINE void zero(__m512i (&c)[R][V]) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_si512();
}

}  // namespace vnni
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

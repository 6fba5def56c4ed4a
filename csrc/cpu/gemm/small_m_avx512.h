// The small-batch forward path (33 <= M <= 64, the GAN batch of 64): weight broadcast.
//
// With a small M each weight element feeds only M multiply-adds, so the general path's
// transposing pack of W (pack_b) costs ~15% of the run time, mostly waiting on memory.
// Here the roles swap: the tile is C^T, R = 6 weight rows by 64 batch rows (4 zmm), so
// W is read in place - each k step broadcasts W[n, k] (fp32) or the pair W[n, k:k+2]
// (bf16 vdpbf16ps) straight from 6 row streams the hardware prefetcher follows - and
// only x is packed, once per k block, as x^T [k][64] (fp32 values or bf16 k-pairs), which
// every tile then streams from L2. Each weight element is loaded exactly once.
//
// Blocking: the k block is as large as keeps x^T at 512 KiB (half the L2): 2048 for fp32,
// 4096 for bf16, so the GAN layers (K <= 4096) need at most two passes; partial sums live
// in a per-thread [n][64] fp32 scratch in the registers' own layout. The epilogue applies
// bias (per tile row) and activation on the registers and stores the tile, still as C^T,
// into a per-thread stage of 48 columns x 64 rows (12 KiB, in L1); once 8 tiles have filled
// it, 16 x 16 block transposes write whole 16-column row segments of C. (Transposing each
// 6-column tile by itself, with a 24-byte masked store per batch row, cost ~700 cycles a
// tile: 35 us of a 64 x 128 x 1024 bf16 layer's 108 us on one core.)
//
// Used for forward-shaped problems only (no prologue), W rows contiguous (B's k stride 1),
// and operands of the kernel's own dtype (fp32, or bf16 for the vdpbf16ps kernel).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../parallel.h"
#include "driver.h"
#include "epilogue_avx512.h"
#include "microkernel_avx512.h"
#include "pack_avx512.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {
namespace {

constexpr int kWbRows = 6, kWbM = 64;

constexpr int kStageCols = 8 * kWbRows;  // 48: a multiple of the tile and of 16 (the transpose block)

struct WbTile {
  float* part = nullptr;   // [kWbRows][64] fp32 partial sums: read unless first, written unless last
  float* stage = nullptr;  // [kWbRows][64]: where the last k block leaves act(acc + bias), as C^T
  int rows = 0;
  const float* bias = nullptr;  // bias + n0, or null
  int act = 0;
  float slope = 0.f;
  bool first = true, last = true;
};

template <int ACT, int R>
FASTGAN_AVX512_INLINE void wb_finish(__m512 (&c)[R][4], const WbTile& t) {
  const __m512 slope = _mm512_set1_ps(t.slope);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 b = t.bias ? _mm512_set1_ps(t.bias[r]) : _mm512_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) _mm512_store_ps(t.stage + r * kWbM + 16 * v, act_ps<ACT>(_mm512_add_ps(c[r][v], b), slope));
  }
}

// r[i] = row i of a 16 x 16 fp32 block -> r[j] = its column j.
FASTGAN_AVX512_INLINE void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {  // per 128-bit lane L: rows i, i+1 interleaved
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {  // r[4q + s], lane L = column 4L + s, rows 4q .. 4q + 3
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
    const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
#pragma GCC unroll 4
  for (int s = 0; s < 4; ++s) {  // gather the four row quarters of each column
    t[s] = _mm512_shuffle_f32x4(r[s], r[s + 4], 0x88);
    t[s + 4] = _mm512_shuffle_f32x4(r[s], r[s + 4], 0xdd);
    t[s + 8] = _mm512_shuffle_f32x4(r[s + 8], r[s + 12], 0x88);
    t[s + 12] = _mm512_shuffle_f32x4(r[s + 8], r[s + 12], 0xdd);
  }
#pragma GCC unroll 4
  for (int s = 0; s < 4; ++s) {
    r[s] = _mm512_shuffle_f32x4(t[s], t[s + 8], 0x88);
    r[s + 8] = _mm512_shuffle_f32x4(t[s], t[s + 8], 0xdd);
    r[s + 4] = _mm512_shuffle_f32x4(t[s + 4], t[s + 12], 0x88);
    r[s + 12] = _mm512_shuffle_f32x4(t[s + 4], t[s + 12], 0xdd);
  }
}

// C[m, c] = stage[c][m] for m < M, c < cols (<= kStageCols), in C's dtype; out = &C[0, n].
static FASTGAN_AVX512_TARGET void wb_flush(const float* stage, int cols, int M, char* out, int64_t ldc, DType dt) {
  const int64_t esz = dtype_size(dt);
  for (int mb = 0; mb < M; mb += 16) {
    const int nm = std::min(16, M - mb);
    for (int cb = 0; cb < cols; cb += 16) {
      const int nc = std::min(16, cols - cb);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) r[i] = i < nc ? _mm512_load_ps(stage + (cb + i) * kWbM + mb) : _mm512_setzero_ps();
      transpose16x16(r);
      const __mmask16 mask = lanes_mask(nc);
      for (int j = 0; j < nm; ++j) store16(out + ((mb + j) * ldc + cb) * esz, dt, r[j], mask);
    }
  }
}

template <int R>
FASTGAN_AVX512_INLINE void wb_end(__m512 (&c)[R][4], const WbTile& t) {
  if (!t.last) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) _mm512_store_ps(t.part + r * kWbM + 16 * v, c[r][v]);
    return;
  }
  cpu::avx512::dispatch_activation(
      t.act, [&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { wb_finish<decltype(a)::value, R>(c, t); });
}

template <int R>
FASTGAN_AVX512_INLINE void wb_begin(__m512 (&c)[R][4], const WbTile& t) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) c[r][v] = t.first ? _mm512_setzero_ps() : _mm512_load_ps(t.part + r * kWbM + 16 * v);
}

// fp32: w = &W[n0, k0] (rows ldw apart), xp = x^T panel [kc][64].
template <int R>
static FASTGAN_AVX512_TARGET void wb_f32(int64_t kc, const float* w, int64_t ldw, const float* xp, const WbTile& t) {
  __m512 c[R][4];
  wb_begin<R>(c, t);
  const float* next = w + R * ldw;  // the next tile's rows: prefetched one line per 16 k
  for (int64_t k = 0; k < kc; ++k) {
    __m512 b[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) b[v] = _mm512_load_ps(xp + k * kWbM + 16 * v);
    if ((k & 15) == 0)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(next + r * ldw + k), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(w[r * ldw + k]);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
    }
  }
  wb_end<R>(c, t);
}

// bf16: w = &W[n0, k0] (bf16, rows ldw elements apart), xp = x^T pair panel [kc/2][64]
// words. An odd kc's last element pairs with 0 (the panel's pad is 0 as well).
template <int R>
static __attribute__((target(FASTGAN_AVX512_BF16_FEATURES))) void wb_bf16(int64_t kc, const uint16_t* w,
                                                                         int64_t ldw, const uint16_t* xp,
                                                                         const WbTile& t) {
  __m512 c[R][4];
  wb_begin<R>(c, t);
  const uint16_t* next = w + R * ldw;
  const int64_t kp_full = kc / 2;
  for (int64_t kp = 0; kp <= kp_full; ++kp) {
    if (kp == kp_full && !(kc & 1)) break;
    __m512bh b[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) b[v] = (__m512bh)_mm512_load_si512(xp + kp * 2 * kWbM + 32 * v);
    if ((kp & 15) == 0)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) _mm_prefetch(reinterpret_cast<const char*>(next + r * ldw + 2 * kp), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint16_t* p = w + r * ldw + 2 * kp;
      uint32_t word = *p;  // an odd tail pairs with 0
      if (kp < kp_full) std::memcpy(&word, p, 4);
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(word));
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) c[r][v] = _mm512_dpbf16_ps(c[r][v], a, b[v]);
    }
  }
  wb_end<R>(c, t);
}

// Whether the problem takes this path with operands of dtype `dt` (the kernel's own).
inline bool wb_applicable(const Problem& p, DType dt) {
  return p.dact == 0 && p.M >= 33 && p.M <= kWbM && p.N >= kWbRows && p.b.rs == 1 && p.a.dtype == dt &&
         p.b.dtype == dt;
}

// kBf16: vdpbf16ps on bf16 operands, else fp32 FMA.
template <bool kBf16>
void wb_rect(const Problem& p, int64_t n0, int64_t n1) {
  using E = typename std::conditional<kBf16, uint16_t, float>::type;
  constexpr int64_t KC = kBf16 ? 4096 : 2048;
  const int64_t K = p.K, nkb = ceil_div(K, KC), kc_blk = round_up(ceil_div(K, nkb), 2);
  constexpr int64_t kPartCols = 8190;  // bounds the [n][64] partial scratch (2 MiB)
  if (nkb > 1 && n1 - n0 > kPartCols) {
    for (int64_t c0 = n0; c0 < n1; c0 += kPartCols) wb_rect<kBf16>(p, c0, std::min(n1, c0 + kPartCols));
    return;
  }
  E* xp = static_cast<E*>(scratch<WbTile>(0).get(sizeof(E) * kWbM * kc_blk));
  float* part = nkb > 1 ? static_cast<float*>(scratch<WbTile>(1).get(
                              sizeof(float) * kWbM * round_up(n1 - n0, kWbRows)))
                        : nullptr;
  float* stage = static_cast<float*>(scratch<WbTile>(2).get(sizeof(float) * kWbM * kStageCols));
  const int64_t ldw = p.b.cs;
  const int csz = dtype_size(p.c_dtype);
  for (int64_t pc = 0; pc < K; pc += kc_blk) {
    const int64_t kc = std::min(kc_blk, K - pc), kcp = round_up(kc, 2);
    if (kBf16) {
      pack_pairs<kWbM>(operand_a(p.a, 0, pc), Prologue{}, static_cast<int>(p.M), kc, kcp,
                       reinterpret_cast<uint16_t*>(xp));
    } else {
      pack_f32<kWbM>(operand_a(p.a, 0, pc), Prologue{}, static_cast<int>(p.M), kc, reinterpret_cast<float*>(xp));
    }
    const bool last = pc + kc >= K;
    for (int64_t g0 = n0; g0 < n1; g0 += kStageCols) {  // 8 tiles share the stage, then C gets them
      const int64_t g1 = std::min(n1, g0 + kStageCols);
      for (int64_t n = g0; n < g1; n += kWbRows) {
        WbTile t;
        t.rows = static_cast<int>(std::min<int64_t>(kWbRows, g1 - n));
        t.part = part ? part + (n - n0) * kWbM : nullptr;
        t.stage = stage + (n - g0) * kWbM;
        t.bias = p.bias ? p.bias + n : nullptr;
        t.act = p.act, t.slope = p.slope;
        t.first = pc == 0, t.last = last;
        const E* w = static_cast<const E*>(p.b.data) + n * ldw + pc;
        if constexpr (kBf16) {
          static void (*const kernels[kWbRows])(int64_t, const uint16_t*, int64_t, const uint16_t*,
                                                const WbTile&) = {&wb_bf16<1>, &wb_bf16<2>, &wb_bf16<3>,
                                                                  &wb_bf16<4>, &wb_bf16<5>, &wb_bf16<6>};
          kernels[t.rows - 1](kc, w, ldw, xp, t);
        } else {
          static void (*const kernels[kWbRows])(int64_t, const float*, int64_t, const float*, const WbTile&) = {
              &wb_f32<1>, &wb_f32<2>, &wb_f32<3>, &wb_f32<4>, &wb_f32<5>, &wb_f32<6>};
          kernels[t.rows - 1](kc, w, ldw, xp, t);
        }
      }
      if (last)
        wb_flush(stage, static_cast<int>(g1 - g0), static_cast<int>(p.M), static_cast<char*>(p.c) + g0 * csz, p.ldc,
                 p.c_dtype);
    }
  }
}

// Splits N (in whole tiles) over the threads; every thread packs the small x^T itself.
template <bool kBf16>
void run_wb(const Problem& p) {
  const int64_t tiles = ceil_div(p.N, kWbRows);
  int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  if (static_cast<double>(p.M) * p.N * p.K < 16384.0) threads = 1;
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads, tiles));
  parallel_for(0, parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t n0 = split_lo(tiles, static_cast<int>(parts), static_cast<int>(i)) * kWbRows;
      const int64_t n1 = std::min(p.N, split_lo(tiles, static_cast<int>(parts), static_cast<int>(i) + 1) * kWbRows);
      if (n0 < n1) wb_rect<kBf16>(p, n0, n1);
    }
  });
}

}  // namespace
}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

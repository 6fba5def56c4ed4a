// The block-sparse micro-tile: one R x (16 V) tile of the output accumulated in zmm
// registers over a LIST of (A segment, B segment) pairs, then the GEMM core's register
// epilogue (bias + activation + dtype, gemm/epilogue_avx512.h). Each segment runs the
// GEMM core's micro-kernel k loop (gemm/microkernel_avx512.h: f32_steps, bf16_steps) on
// packed panels:
//   A: an MR = 8 lane panel, [k][8] fp32 or [k/2][8] bf16 pairs; segment s starts at
//      a + a_idx[s] * a_step (a block column of the packed x, or block row of packed g)
//   B: a panel of BS columns, [k][BS] fp32 or [k/2][BS] pairs; segment s at
//      b + (b_idx ? b_idx[s] : s) * b_step (packed kept blocks, or values in place)
// so the kept blocks of a block row are consumed without leaving the registers: no
// partial sums are stored between blocks. (A driver may still split a long k into
// chunks with fp32 partial sums, TileOut::first / last, as the GEMM core does.)
// While segment s runs, the A segment of s + 1 (scattered in the packed x) is prefetched
// into L1, spread over the first half of its k steps (b is a contiguous stream or a block
// the hardware prefetchers follow); the driver may also hand each tile a share of what it
// reads next, prefetched into L2 (Segs::ahead).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../gemm/microkernel_avx512.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace avx512 {
using namespace ::fastgan::cpu::gemm::avx512;
using gemm::TileOut;

struct Segs {
  const void* a = nullptr;
  const int32_t* a_idx = nullptr;  // null: segment s at a + s * a_step
  int64_t a_step = 0;              // elements
  const void* b = nullptr;
  const int32_t* b_idx = nullptr;  // null: segment s at b + s * b_step
  int64_t b_step = 0;
  int n = 0;       // segments
  int64_t k = 0;   // k per segment (even for bf16)
  // Optional: `ahead_lines` cache lines from `ahead` (what the driver reads next, e.g. the
  // next group's kept blocks) to prefetch into L2 over this tile's k steps.
  const char* ahead = nullptr;
  int ahead_lines = 0;
};

// One prefetch stream: `left` lines from p, one per `every` k steps.
template <int HINT>
struct Stream {
  const char* p = nullptr;
  int left = 0, every = 1, wait = 0;
  __attribute__((always_inline)) void aim(const char* from, int lines, int64_t steps) {
    p = from, left = lines, wait = 0;
    every = lines > 0 ? static_cast<int>(steps / (2 * lines)) : 1;  // spread over the first half
    if (every < 1) every = 1;
  }
  __attribute__((always_inline)) void step() {
    if (left <= 0 || --wait > 0) return;
    wait = every;
    _mm_prefetch(p, static_cast<_mm_hint>(HINT));
    p += 64;
    --left;
  }
};

// The tile's prefetches: the next A segment (scattered in the packed x) into L1, and the
// driver's look-ahead into L2.
struct TilePrefetch {
  Stream<_MM_HINT_T0> next_a;
  Stream<_MM_HINT_T1> ahead;
  __attribute__((always_inline)) void step() {
    next_a.step();
    ahead.step();
  }
};

template <class E>
FASTGAN_AVX512_INLINE const E* seg_a(const Segs& s, int i) {
  return static_cast<const E*>(s.a) + (s.a_idx ? static_cast<int64_t>(s.a_idx[i]) : i) * s.a_step;
}
template <class E>
FASTGAN_AVX512_INLINE const E* seg_b(const Segs& s, int i) {
  return static_cast<const E*>(s.b) + (s.b_idx ? static_cast<int64_t>(s.b_idx[i]) : i) * s.b_step;
}

// Zero, or the fp32 partial sums of an earlier k chunk (TileOut::first, as in the GEMM core).
template <int R, int V>
FASTGAN_AVX512_INLINE void tile_start(__m512 (&c)[R][V], const TileOut& o, __mmask16 tail) {
  if (!o.first) return tile_load_acc<R, V>(c, o, tail);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_ps();
}

template <int R, int V, int BS>
static FASTGAN_AVX512_TARGET void seg_tile_f32(const Segs& s, const TileOut& o) {
  __m512 c[R][V];
  const __mmask16 tail = lanes_mask(o.cols - 16 * (V - 1));
  tile_start<R, V>(c, o, tail);
  const int lines = static_cast<int>((s.k * kMR * 4 + 63) / 64);
  TilePrefetch pf;
  pf.ahead.aim(s.ahead, s.ahead_lines, s.n * s.k);
  for (int i = 0; i < s.n; ++i) {
    if (i + 1 < s.n) pf.next_a.aim(reinterpret_cast<const char*>(seg_a<float>(s, i + 1)), lines, s.k);
    f32_steps<R, V, BS>(c, s.k, seg_a<float>(s, i), seg_b<float>(s, i), pf);
  }
  tile_epilogue<R, V>(c, o, tail);
}

template <int R, int V, int BS>
static __attribute__((target(FASTGAN_AVX512_BF16_FEATURES))) void seg_tile_bf16(const Segs& s, const TileOut& o) {
  __m512 c[R][V];
  const __mmask16 tail = lanes_mask(o.cols - 16 * (V - 1));
  tile_start<R, V>(c, o, tail);
  const int lines = static_cast<int>((s.k * kMR * 2 + 63) / 64);
  TilePrefetch pf;
  pf.ahead.aim(s.ahead, s.ahead_lines, s.n * s.k / 2);
  for (int i = 0; i < s.n; ++i) {
    if (i + 1 < s.n) pf.next_a.aim(reinterpret_cast<const char*>(seg_a<uint16_t>(s, i + 1)), lines, s.k / 2);
    bf16_steps<R, V, BS>(c, s.k / 2, seg_a<uint16_t>(s, i), seg_b<uint16_t>(s, i), pf);
  }
  tile_epilogue<R, V>(c, o, tail);
}

using SegTile = void (*)(const Segs&, const TileOut&);

// Instances: R = 1..8 rows; (V, BS) in {(1,16), (1,32), (2,32), (1,64), (2,64)}: tiles are
// at most 32 columns wide (a block row of 64 is two tiles), BS = 64 only for fp32 values
// read in place by grad_x (rows of a 64-wide block).
#define FASTGAN_BSR_ROW(fn, r) {&fn<r, 1, 16>, &fn<r, 1, 32>, &fn<r, 2, 32>, &fn<r, 1, 64>, &fn<r, 2, 64>}
#define FASTGAN_BSR_TABLE(fn)                                                                            \
  {FASTGAN_BSR_ROW(fn, 1), FASTGAN_BSR_ROW(fn, 2), FASTGAN_BSR_ROW(fn, 3), FASTGAN_BSR_ROW(fn, 4),      \
   FASTGAN_BSR_ROW(fn, 5), FASTGAN_BSR_ROW(fn, 6), FASTGAN_BSR_ROW(fn, 7), FASTGAN_BSR_ROW(fn, 8)}

inline int seg_tile_slot(int cols, int bs) {
  const int v = cols > 16 ? 2 : 1;
  return bs == 16 ? 0 : bs == 32 ? v : 2 + v;
}

// The instance for a rows x cols tile (rows 1..8, cols 1..32) with B row stride bs.
static inline SegTile seg_tile_f32_for(int rows, int cols, int bs) {
  static const SegTile table[kMR][5] = FASTGAN_BSR_TABLE(seg_tile_f32);
  return table[rows - 1][seg_tile_slot(cols, bs)];
}
static inline SegTile seg_tile_bf16_for(int rows, int cols, int bs) {
  static const SegTile table[kMR][5] = FASTGAN_BSR_TABLE(seg_tile_bf16);
  return table[rows - 1][seg_tile_slot(cols, bs)];
}

#undef FASTGAN_BSR_TABLE
#undef FASTGAN_BSR_ROW

}  // namespace avx512
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

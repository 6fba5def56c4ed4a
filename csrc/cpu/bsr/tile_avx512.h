// The AVX-512 block-sparse micro-tile (contract: segs.h): one R x (16 V) tile of the
// output accumulated in zmm registers over the segment list, then the GEMM core's
// register epilogue (bias + activation + dtype, gemm/epilogue_avx512.h). Each segment
// runs the GEMM core's micro-kernel k loop (gemm/microkernel_avx512.h: f32_steps,
// bf16_steps) on packed panels: A an MR = 8 lane panel, B a panel of BS columns.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../gemm/microkernel_avx512.h"
#include "segs.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace avx512 {
using namespace ::fastgan::cpu::gemm::avx512;
using gemm::TileOut;

// The driver's (driver.h) tiling numbers for the AVX-512 kernels, a base of their traits.
struct TileShape {
  static constexpr int MR = kMR;  // 8 rows: 8 x 32 fp32 = 16 zmm accumulators
  // L2 shares (of 1 MiB on Zen 4, 2 MiB on Sapphire Rapids): the B of a group of lines,
  // and the A panels of a chunk of m-tiles (split.h: grouped_walk).
  static constexpr int64_t kGroupBytes = 320 << 10, kChunkBytes = 256 << 10;
  static int tile_width(int64_t block) { return block >= 32 ? 32 : 16; }
};

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

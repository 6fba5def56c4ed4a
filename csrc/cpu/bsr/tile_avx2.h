// The AVX2 + FMA block-sparse micro-tile (contract: segs.h): one R x (8 V) tile of the
// output, R <= 6 rows by V <= 2 vectors of 8 columns, accumulated in ymm registers over
// the segment list by the dense AVX2 kernel's k loop (gemm/microkernel_avx2.h: 6 x 16,
// 12 accumulators of the 16 ymm registers), then the AVX2 register epilogue (bias +
// activation + dtype, gemm/epilogue_avx2.h). A 16-column tile divides every block size
// (16..256), so the driver packs B panels of 16 columns (tile_width) and a tile never
// straddles blocks.
//
// B is read with unaligned loads at a run-time row stride (Segs::b_ld): packed panels
// (stride 16) and fp32 values read in place by grad_x (stride bk, any bk) take the same
// instances, 12 in all.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../gemm/microkernel_avx2.h"
#include "segs.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace avx2 {
using namespace ::fastgan::cpu::gemm::avx2;
using gemm::TileOut;

constexpr int kTW = 16;  // tile columns; rows: kMR = 6 (microkernel_avx2.h)

// The driver's (driver.h) tiling numbers for the AVX2 kernel, a base of its traits.
struct TileShape {
  static constexpr int MR = kMR;
  // L2 shares (of 512 KiB on Zen 2 / Zen 3, 256 KiB - 1.25 MiB on Intel AVX2 cores): the
  // B of a group of lines, and the A panels of a chunk of m-tiles (split.h).
  static constexpr int64_t kGroupBytes = 192 << 10, kChunkBytes = 160 << 10;
  static int tile_width(int64_t) { return kTW; }
};

template <int R, int V>
static FASTGAN_AVX2_TARGET void seg_tile_f32(const Segs& s, const TileOut& o) {
  __m256 c[R][V];
  tile_start<R, V>(c, o);
  const int lines = static_cast<int>((s.k * kMR * 4 + 63) / 64);
  const int64_t ld = s.b_ld;
  TilePrefetch pf;
  pf.ahead.aim(s.ahead, s.ahead_lines, s.n * s.k);
  for (int i = 0; i < s.n; ++i) {
    if (i + 1 < s.n) pf.next_a.aim(reinterpret_cast<const char*>(seg_a<float>(s, i + 1)), lines, s.k);
    f32_steps<R, V>(c, s.k, seg_a<float>(s, i), seg_b<float>(s, i), ld, pf);
  }
  tile_epilogue<R, V>(c, o);
}

using SegTile = void (*)(const Segs&, const TileOut&);

// The instance for a rows x cols tile (rows 1..6, cols 1..16).
static inline SegTile seg_tile_f32_for(int rows, int cols) {
  static const SegTile table[kMR][2] = {
      {&seg_tile_f32<1, 1>, &seg_tile_f32<1, 2>}, {&seg_tile_f32<2, 1>, &seg_tile_f32<2, 2>},
      {&seg_tile_f32<3, 1>, &seg_tile_f32<3, 2>}, {&seg_tile_f32<4, 1>, &seg_tile_f32<4, 2>},
      {&seg_tile_f32<5, 1>, &seg_tile_f32<5, 2>}, {&seg_tile_f32<6, 1>, &seg_tile_f32<6, 2>}};
  return table[rows - 1][cols > 8];
}

}  // namespace avx2
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

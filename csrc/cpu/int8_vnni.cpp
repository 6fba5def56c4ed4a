// The AVX512-VNNI int8 GEMM path: vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and
// adds the 4 products to an int32 lane. The activations are made unsigned (x + 128, an XOR
// with 0x80) while they are packed, the weight stays signed in its packed panels, and the
// epilogue subtracts comp[n] = 128 * sum_k w[n, k] (int8/packed_weight.h explains why the
// result is exact although the lanes wrap).
//
// Micro-kernel: 8 rows x 48 columns (3 panels) in 24 zmm accumulators. Per group of 4 k it
// loads one 64-byte row of each of the 3 panels and broadcasts 4 bytes of each of the 8 rows
// of A (8 x 3 vpdpbusd): 24 accumulators + 3 B + 1 broadcast registers. The whole K runs in
// one call (no K blocking, so the int32 sums never leave the registers); the B micro-panel
// (48 columns x K, 192 KiB at K = 4096) stays in L2 while the kernel sweeps the rows of A,
// and the A micro-panel (8 x K) streams from L1 / L2. The epilogue (int8/epilogue_avx512.h)
// runs on the accumulators.
//
// A is packed once per call into [M / 8][K4 / 4][8][4] u8 (K4 = K rounded to 4): the 8 rows'
// 4-byte groups of one k step are 32 contiguous bytes. A float A (int8_linear_dynamic_fwd) is
// quantised per token row by row into an L1-sized buffer on the way (a_row, int8.h). Threads split the columns (48-column
// blocks), and also the rows when there are fewer column blocks than threads.
//
// The A packing and the vpdpbusd k loop live in int8/vnni_avx512.h (shared with the
// block-sparse int8 GEMM, bsr_int8_vnni.cpp).
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "activation.h"
#include "int8/epilogue_avx512.h"
#include "int8/vnni_avx512.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

using vnni::kMR;
constexpr int kNV = 3;  // panels of the micro-tile

template <int R, int V>
static FASTGAN_VNNI_TARGET void micro_tile(int64_t kgs, const uint8_t* a, const int8_t* b, int64_t pb,
                                           const avx512::TileCtx& t) {
  __m512i c[R][V];
  vnni::zero(c);
  vnni::accumulate(c, kgs, a, b, pb);
  avx512::epilogue<R, V>(c, t);
}

using TileFn = void (*)(int64_t, const uint8_t*, const int8_t*, int64_t, const avx512::TileCtx&);
#define FASTGAN_I8_ROW(r) {&micro_tile<r, 1>, &micro_tile<r, 2>, &micro_tile<r, 3>}
const TileFn kTiles[kMR][kNV] = {FASTGAN_I8_ROW(1), FASTGAN_I8_ROW(2), FASTGAN_I8_ROW(3), FASTGAN_I8_ROW(4),
                                 FASTGAN_I8_ROW(5), FASTGAN_I8_ROW(6), FASTGAN_I8_ROW(7), FASTGAN_I8_ROW(8)};
#undef FASTGAN_I8_ROW

}  // namespace

int64_t gemm_vnni(const GemmArgs& g) {
  const int64_t kgs = ceil_div(g.K, kGroup);
  const int64_t mpanels = ceil_div(g.M, kMR);
  const int64_t apanel = kgs * kMR * kGroup;
  uint8_t* apack = nullptr;
  const int64_t bad = vnni::pack_a(g, kgs, &apack);
  if (bad >= 0) return bad;

  const int64_t nblocks = ceil_div(g.w.panels, kNV);
  const Split s = split_work(g.M, g.K, nblocks, kNV * kPanel, kMR);
  const int64_t pb = g.w.panel_bytes();
  parallel_for(0, s.tasks, s.grain, [&](int64_t b, int64_t e) {
    avx512::TileCtx t;
    t.e = &g.e;
    t.ldo = g.e.ld(g.N);
    for (int64_t task = b; task < e; ++task) {
      const int64_t nb = task / s.msplit, part = task % s.msplit;
      const int64_t p0 = nb * kNV, np = std::min<int64_t>(kNV, g.w.panels - p0);
      const int64_t i0 = part * mpanels / s.msplit, i1 = (part + 1) * mpanels / s.msplit;
      t.n0 = p0 * kPanel;
      t.cols = static_cast<int>(std::min<int64_t>(np * kPanel, g.N - t.n0));
      t.comp = g.w.comp + t.n0;
      const int8_t* bp = g.w.data + p0 * pb;
      for (int64_t i = i0; i < i1; ++i) {
        t.m0 = i * kMR;
        t.rows = static_cast<int>(std::min<int64_t>(kMR, g.M - t.m0));
        kTiles[t.rows - 1][np - 1](kgs, apack + i * apanel, bp, pb, t);
      }
    }
  });
  return -1;
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t gemm_vnni(const GemmArgs& g) { return gemm_portable(g); }
}}}
#endif

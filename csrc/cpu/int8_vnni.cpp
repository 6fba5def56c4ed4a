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
// GCC 12 keeps the _mm512_dpbusd_epi32 accumulators of an unrolled tile in memory (a
// store / reload per instruction); the one-instruction asm below keeps them in registers.
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "activation.h"
#include "int8/epilogue_avx512.h"
#include "parallel.h"

#define FASTGAN_VNNI_FEATURES FASTGAN_AVX512_FEATURES ",avx512vnni"
#define FASTGAN_VNNI_TARGET __attribute__((target(FASTGAN_VNNI_FEATURES)))

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

constexpr int kMR = 8, kNV = 3;  // rows x panels of the micro-tile

static inline __attribute__((always_inline, target(FASTGAN_VNNI_FEATURES))) __m512i dpbusd(__m512i acc, __m512i a_u8,
                                                                                             __m512i b_s8) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a_u8), "v"(b_s8));
  return acc;
}

typedef int32_t __attribute__((may_alias, aligned(1))) i32_alias;

// One row of A (element k at src[k * cs]) into its place `d` of an A micro-panel.
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

// Rows [m0, m0 + rows) of A as one micro-panel: [kg][8][4] bytes of x ^ 0x80, zero padding
// (any value would do: the padded k of the weight are zero, the padded rows are not stored).
// A float A is quantised row by row into `tmp` first (a_row); returns the first row holding
// NaN / Inf (the panel is then left incomplete), or -1.
static FASTGAN_VNNI_TARGET int64_t pack_a_panel(const GemmArgs& g, int64_t m0, int rows, int64_t kgs, uint8_t* dst,
                                                int8_t* tmp) {
  std::memset(dst, 0, static_cast<size_t>(kgs * kMR * kGroup));
  for (int r = 0; r < rows; ++r) {
    int64_t cs;
    const int8_t* src = a_row(g, m0 + r, tmp, &cs);
    if (src == nullptr) return m0 + r;
    pack_a_row(src, cs, g.K, dst + r * kGroup);
  }
  return -1;
}

template <int R, int V>
static FASTGAN_VNNI_TARGET void micro_tile(int64_t kgs, const uint8_t* a, const int8_t* b, int64_t pb,
                                           const avx512::TileCtx& t) {
  __m512i c[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_si512();
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
  uint8_t* apack = static_cast<uint8_t*>(ThreadScratch::get(std::max<int64_t>(1, mpanels * apanel)));
  const int64_t pack_grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, apanel));
  FirstBadRow bad;
  parallel_for(0, mpanels, pack_grain, [&](int64_t b, int64_t e) {
    int8_t* tmp = g.fx ? static_cast<int8_t*>(ThreadScratch::get(std::max<int64_t>(1, g.K), ThreadScratch::kRow))
                       : nullptr;
    for (int64_t i = b; i < e; ++i) {
      const int64_t r =
          pack_a_panel(g, i * kMR, static_cast<int>(std::min<int64_t>(kMR, g.M - i * kMR)), kgs, apack + i * apanel, tmp);
      if (r >= 0) {  // the later rows of this range can only come later
        bad.note(r);
        return;
      }
    }
  });
  if (bad.any()) return bad.row();

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

// The AVX2 int8 GEMM path (x86-64 with AVX2 but without AVX512-VNNI: Haswell .. Alder Lake,
// Zen 1-3), where the int8 GEMM would otherwise run the portable scalar kernel.
//
// Exactness. AVX2's byte multiply, vpmaddubsw, adds pairs of u8 x s8 products into int16 with
// saturation (255 * 127 * 2 overflows it), so it is not used. Both operands are sign-extended
// to int16 instead and multiplied with vpmaddwd: int16 x int16 products summed in pairs into
// int32 lanes, exact (127 * 127 * 2 is far from 2^31), and the int32 adds wrap exactly like
// the reference's sum whenever the result fits in int32 (which the Python layer guarantees).
//
// Weight: the packed blob of int8_pack_weight, as is (int8/packed_weight.h): per 16-column
// panel, [Kp / 4][16][4] bytes. 16 bytes of one 64-byte row are 4 columns x 4 k; vpmovsxbw
// widens them to one ymm of int16 [c0: k0 k1 k2 k3 | c1: ... | c2 | c3], and vpmaddwd against
// the row's 4 k (int16, broadcast to the 4 columns) leaves two int32 lanes per column (k0 k1
// and k2 k3), summed once per tile at the end (vphaddd + one permute). The +128 compensation
// of the VNNI path is not needed (s8 x s8).
//
// A: packed once per call, sign-extended, into micro-panels of 6 rows, [kgs][6][4] int16: the
// 4 k of one row for one k group are 8 bytes, broadcast straight from memory (vpbroadcastq).
// A float A (int8_linear_dynamic_fwd) is quantised per token on the way (a_row, int8.h).
//
// Micro-kernel: 6 rows x 8 columns (half a panel) in 12 ymm accumulators (6 rows x 2 vectors
// of 4 columns x 2 lanes) + 2 B + 1 broadcast + 1 product = 16 registers. Per group of 4 k:
// 2 B loads, 6 broadcasts, 12 vpmaddwd, 12 vpaddd. Tiles of 1 or 2 rows (small batches, row
// tails) cover a whole panel (16 columns) instead. The whole K runs in one call, so the int32
// sums never leave the registers; the B block (2 panels = 32 columns x K) stays in L2 while
// the kernel sweeps the rows of A, and each A micro-panel is read 4 times from L1 / L2.
// Threads split the columns (32-column blocks), and also the rows when there are fewer column
// blocks than threads (split_work, shared with the VNNI path). Epilogue: int8/epilogue_avx2.h.
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "activation.h"
#include "int8/epilogue_avx2.h"
#include "int8/pack_a.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

constexpr int kMR = 6;  // rows of an A micro-panel and of the micro-tile
constexpr int kNV = 2;  // panels of a column block (one task's columns)
constexpr int64_t kGroupStride = kMR * kGroup;  // int16 per k group of an A micro-panel

typedef int64_t __attribute__((may_alias, aligned(1))) i64_alias;

// One row of A (element k at src[k * cs]) sign-extended into its place `d` of a micro-panel.
static FASTGAN_AVX2_TARGET void pack_a_row(const int8_t* src, int64_t cs, int64_t K, int16_t* d) {
  int64_t k = 0;
  if (cs == 1) {
    for (; k + 16 <= K; k += 16) {  // 16 k = 4 groups: one widen, 4 scattered 8-byte words
      alignas(32) int64_t w[4];
      _mm256_store_si256(reinterpret_cast<__m256i*>(w),
                         _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
      int16_t* dk = d + (k / kGroup) * kGroupStride;
      for (int j = 0; j < 4; ++j) *reinterpret_cast<i64_alias*>(dk + j * kGroupStride) = w[j];
    }
  }
  for (; k < K; ++k) d[(k / kGroup) * kGroupStride + k % kGroup] = src[k * cs];
}

// All of A as ceil(M / 6) micro-panels of `kgs` k groups each (pack_a.h). Returns the first
// row of a float A holding NaN / Inf, or -1.
int64_t pack_a(const GemmArgs& g, int64_t kgs, int16_t** apack) {
  void* out = nullptr;
  const int64_t bad = pack_a_panels(g, kMR, kgs * kGroupStride * 2, &out,
                                    [&](const int8_t* src, int64_t cs, void* panel, int r) {
                                      pack_a_row(src, cs, g.K, static_cast<int16_t*>(panel) + r * kGroup);
                                    });
  *apack = static_cast<int16_t*>(out);
  return bad;
}

// c0 += pairs(a4 x b0), c1 += pairs(a4 x b1) for one row's 4 k `a4` (int16, broadcast from
// memory) and two B vectors of 4 columns. One asm block: GCC's scheduler otherwise hoists the
// 6 broadcasts of a k group ahead of their products and spills accumulators to the stack (12
// accumulators + 2 B + 2 temporaries use all 16 ymm).
FASTGAN_AVX2_INLINE void madd_row(__m256i& c0, __m256i& c1, const int16_t* a4, __m256i b0, __m256i b1) {
  __m256i t0, t1;
  __asm__(
      "vpbroadcastq %[a], %[t0]\n\t"
      "vpmaddwd %[b1], %[t0], %[t1]\n\t"
      "vpmaddwd %[b0], %[t0], %[t0]\n\t"
      "vpaddd %[t1], %[c1], %[c1]\n\t"
      "vpaddd %[t0], %[c0], %[c0]"
      : [c0] "+x"(c0), [c1] "+x"(c1), [t0] "=&x"(t0), [t1] "=&x"(t1)
      : [a] "m"(*reinterpret_cast<const i64_alias*>(a4)), [b0] "x"(b0), [b1] "x"(b1));
}

// Rows [t.m0, t.m0 + R) x 4 NB columns at `b` (a half panel, NB = 2, or a whole one, NB = 4;
// 64-byte group rows at stride 64) against the A micro-panel `a`, then the epilogue.
template <int R, int NB>
static FASTGAN_AVX2_TARGET void micro_tile(int64_t kgs, const int16_t* a, const int8_t* b, const avx2::TileCtx& t) {
  __m256i c[R][NB];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) c[r][j] = _mm256_setzero_si256();
  for (int64_t kg = 0; kg < kgs; ++kg, a += kGroupStride, b += kPanel * kGroup) {
#pragma GCC unroll 2
    for (int j = 0; j < NB; j += 2) {
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j)));
      const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * j + 16)));
#pragma GCC unroll 6
      for (int r = 0; r < R; ++r) madd_row(c[r][j], c[r][j + 1], a + r * kGroup, b0, b1);
    }
  }
  // Lane pairs (k0 k1, k2 k3) of each column summed: hadd gives [c0 c1 c4 c5 | c2 c3 c6 c7].
  __m256i acc[R][NB / 2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NB / 2; ++v)
      acc[r][v] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c[r][2 * v], c[r][2 * v + 1]), 0xD8);
  avx2::epilogue<R, NB / 2>(acc, t);
}

using TileFn = void (*)(int64_t, const int16_t*, const int8_t*, const avx2::TileCtx&);
// Half-panel tiles by rows, and whole-panel tiles for 1 or 2 rows (8 + 4 + 2 registers): a
// batch of 1 or 2 then uses each 64-byte weight line in one pass, with half the loop overhead.
const TileFn kTiles[kMR] = {&micro_tile<1, 2>, &micro_tile<2, 2>, &micro_tile<3, 2>,
                            &micro_tile<4, 2>, &micro_tile<5, 2>, &micro_tile<6, 2>};
const TileFn kWideTiles[2] = {&micro_tile<1, 4>, &micro_tile<2, 4>};

}  // namespace

int64_t gemm_avx2(const GemmArgs& g) {
  const int64_t kgs = ceil_div(g.K, kGroup);
  const int64_t mpanels = ceil_div(g.M, kMR), apanel = kgs * kGroupStride;
  int16_t* apack = nullptr;
  const int64_t bad = pack_a(g, kgs, &apack);
  if (bad >= 0) return bad;

  const int64_t nblocks = ceil_div(g.w.panels, kNV);
  const Split s = split_work(g.M, g.K, nblocks, kNV * kPanel, kMR);
  const int64_t pb = g.w.panel_bytes();
  parallel_for(0, s.tasks, s.grain, [&](int64_t b, int64_t e) {
    avx2::TileCtx t;
    t.e = &g.e;
    t.ldo = g.e.ld(g.N);
    for (int64_t task = b; task < e; ++task) {
      const int64_t nb = task / s.msplit, part = task % s.msplit;
      const int64_t n_begin = nb * kNV * kPanel, n_end = std::min<int64_t>(g.N, n_begin + kNV * kPanel);
      const int64_t i0 = part * mpanels / s.msplit, i1 = (part + 1) * mpanels / s.msplit;
      for (int64_t i = i0; i < i1; ++i) {
        t.m0 = i * kMR;
        t.rows = static_cast<int>(std::min<int64_t>(kMR, g.M - t.m0));
        const int step = t.rows <= 2 ? kPanel : kPanel / 2;  // whole or half panels
        for (t.n0 = n_begin; t.n0 < n_end; t.n0 += step) {
          t.cols = static_cast<int>(std::min<int64_t>(step, n_end - t.n0));
          const int8_t* b = g.w.data + (t.n0 / kPanel) * pb + (t.n0 % kPanel) * kGroup;
          (t.rows <= 2 ? kWideTiles : kTiles)[t.rows - 1](kgs, apack + i * apanel, b, t);
        }
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
int64_t gemm_avx2(const GemmArgs& g) { return gemm_portable(g); }
}}}
#endif

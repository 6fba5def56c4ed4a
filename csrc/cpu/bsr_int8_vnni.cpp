// The AVX512-VNNI block-sparse int8 GEMM: y = epilogue(xq @ W^T) with W [N, K] int8 in BSR
// blocks (int8/bsr_packed.h), only the kept blocks read (zero-block skipping).
//
//   1. A is packed once, all of K padded to whole blocks (K' = nbc * bk), into the dense VNNI
//      kernel's 8-row micro-panels of x ^ 0x80 (int8/vnni_avx512.h; a float A is quantised
//      per token on the way): block column c of m-tile i is the contiguous run of bk / 4
//      k groups at i * K' * 8 + c * bk * 8.
//   2. The work is the grid (block row r, m-tile i), split over threads and walked for the
//      caches as the fp32 block-sparse kernels do (bsr/split.h: by block rows for small
//      batches, by m-tiles for large ones; groups of block rows whose kept blocks fit L2,
//      chunks of m-tiles whose A fits L2).
//   3. One unit = up to 8 rows x bn columns, as register tiles of 8 x 32 columns (16 int32
//      accumulators): for each kept block of the row, the dense micro-kernel's k loop over
//      the block's bk / 4 k groups, then the shared int8 epilogue (int8/epilogue_avx512.h:
//      compensation, scales, bias, activation, fp / int8 store) masked to N. A block row with
//      no kept block writes act(bias).
#include "int8/bsr_packed.h"

#if defined(__x86_64__)
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "activation.h"
#include "bsr/split.h"
#include "int8/epilogue_avx512.h"
#include "int8/vnni_avx512.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

using vnni::kMR;
constexpr int kNV = 2;  // 16-column panels per register tile: 8 x 2 accumulators + 2 B + 1 A

// L2 shares (1 MiB on Zen 4): the kept blocks of a group of block rows, the A of a chunk of m-tiles.
constexpr int64_t kGroupBytes = 384 << 10, kChunkBytes = 384 << 10;

// One register tile's segments: the kept blocks [j0, j1) of a block row.
struct Segments {
  const uint8_t* a = nullptr;    // the m-tile's A micro-panel
  int64_t a_col = 0;             // bytes of A per block column
  const int8_t* b = nullptr;     // data + the tile's first panel inside a block
  int64_t b_block = 0, pb = 0;   // bytes per block, per 16-column panel
  int64_t kgb = 0;               // k groups per block
  const int32_t* col_idx = nullptr;
  int64_t j0 = 0, j1 = 0;
};

template <int R, int V>
static FASTGAN_VNNI_TARGET void sparse_tile(const Segments& s, const avx512::TileCtx& t) {
  __m512i c[R][V];
  vnni::zero(c);
  for (int64_t j = s.j0; j < s.j1; ++j)
    vnni::accumulate(c, s.kgb, s.a + s.col_idx[j] * s.a_col, s.b + j * s.b_block, s.pb);
  avx512::epilogue<R, V>(c, t);
}

using TileFn = void (*)(const Segments&, const avx512::TileCtx&);
#define FASTGAN_I8S_ROW(r) {&sparse_tile<r, 1>, &sparse_tile<r, 2>}
const TileFn kTiles[kMR][kNV] = {FASTGAN_I8S_ROW(1), FASTGAN_I8S_ROW(2), FASTGAN_I8S_ROW(3), FASTGAN_I8S_ROW(4),
                                 FASTGAN_I8S_ROW(5), FASTGAN_I8S_ROW(6), FASTGAN_I8S_ROW(7), FASTGAN_I8S_ROW(8)};
#undef FASTGAN_I8S_ROW

// The scalar twin of sparse_tile (test-only: set_bsr_int8_vnni_emulation): the same A micro-panel
// (u8 x ^ 0x80), B panels and compensation, the portable epilogue. Lets the driver below (packing
// layout, split, walk, block / column indexing) be tested on machines without AVX512-VNNI.
template <int R, int V>
void emulated_tile(const Segments& s, const avx512::TileCtx& t) {
  int32_t c[R][V * kPanel] = {};
  for (int64_t j = s.j0; j < s.j1; ++j) {
    const uint8_t* a = s.a + s.col_idx[j] * s.a_col;
    const int8_t* b = s.b + j * s.b_block;
    for (int64_t kg = 0; kg < s.kgb; ++kg)
      for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v)
          for (int col = 0; col < kPanel; ++col)
            for (int q = 0; q < kGroup; ++q)
              c[r][v * kPanel + col] += a[kg * kMR * kGroup + r * kGroup + q] *
                                        b[v * s.pb + kg * kPanel * kGroup + col * kGroup + q];
  }
  for (int r = 0; r < t.rows; ++r)
    for (int col = 0; col < t.cols; ++col)
      store_portable(*t.e, t.ldo, t.m0 + r, t.n0 + col, c[r][col] - t.comp[col]);
}

#define FASTGAN_I8S_ROW(r) {&emulated_tile<r, 1>, &emulated_tile<r, 2>}
const TileFn kEmulatedTiles[kMR][kNV] = {FASTGAN_I8S_ROW(1), FASTGAN_I8S_ROW(2), FASTGAN_I8S_ROW(3),
                                         FASTGAN_I8S_ROW(4), FASTGAN_I8S_ROW(5), FASTGAN_I8S_ROW(6),
                                         FASTGAN_I8S_ROW(7), FASTGAN_I8S_ROW(8)};
#undef FASTGAN_I8S_ROW

// The AVX2 register tile (machines without AVX-512, e.g. AVX2-only EPYCs): no vpdpbusd, so
// each k group is vpmaddubsw(|x|, sign(x) * w) (two products per int16: |x|, |w| <= 128 / 127,
// so the pairs stay below 2^15 and never saturate) then vpmaddwd with ones (four per int32),
// on the signed x (the A panel's u8 flipped back), hence no compensation. Two rows at a time:
// 4 V accumulators + 2 V B registers + 3 temporaries fit the 16 ymm. The epilogue is scalar
// (store_portable): the int32 tile is stored first.
template <int V>
static __attribute__((target("avx2"))) void avx2_tile(const Segments& s, const avx512::TileCtx& t) {
  constexpr int kRows = 2, kQ = 2 * V;  // ymm of 8 int32 per row: 2 per 16-column panel
  alignas(32) int32_t out[kMR][V * kPanel];
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  for (int r0 = 0; r0 < t.rows; r0 += kRows) {  // rows past t.rows are the panel's zero padding
    __m256i c[kRows][kQ];
    for (int r = 0; r < kRows; ++r)
      for (int q = 0; q < kQ; ++q) c[r][q] = _mm256_setzero_si256();
    for (int64_t j = s.j0; j < s.j1; ++j) {
      const uint8_t* a = s.a + s.col_idx[j] * s.a_col + r0 * kGroup;
      const int8_t* b = s.b + j * s.b_block;
      for (int64_t kg = 0; kg < s.kgb; ++kg, a += kMR * kGroup, b += kPanel * kGroup) {
        __m256i bv[kQ];
        for (int v = 0; v < V; ++v) {
          bv[2 * v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + v * s.pb));
          bv[2 * v + 1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + v * s.pb + 32));
        }
        for (int r = 0; r < kRows; ++r) {
          const __m256i x = _mm256_xor_si256(_mm256_set1_epi32(*reinterpret_cast<const vnni::i32_alias*>(a + r * kGroup)), flip);
          const __m256i ax = _mm256_abs_epi8(x);
          for (int q = 0; q < kQ; ++q)
            c[r][q] = _mm256_add_epi32(c[r][q],
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(bv[q], x)), ones));
        }
      }
    }
    for (int r = 0; r < kRows && r0 + r < kMR; ++r)
      for (int q = 0; q < kQ; ++q) _mm256_store_si256(reinterpret_cast<__m256i*>(&out[r0 + r][8 * q]), c[r][q]);
  }
  for (int r = 0; r < t.rows; ++r)
    for (int col = 0; col < t.cols; ++col) store_portable(*t.e, t.ldo, t.m0 + r, t.n0 + col, out[r][col]);
}

#define FASTGAN_I8S_ROW(r) {&avx2_tile<1>, &avx2_tile<2>}
const TileFn kAvx2Tiles[kMR][kNV] = {FASTGAN_I8S_ROW(1), FASTGAN_I8S_ROW(2), FASTGAN_I8S_ROW(3), FASTGAN_I8S_ROW(4),
                                     FASTGAN_I8S_ROW(5), FASTGAN_I8S_ROW(6), FASTGAN_I8S_ROW(7), FASTGAN_I8S_ROW(8)};
#undef FASTGAN_I8S_ROW

// vnni::pack_a in plain C++ (the emulation's packer): the same [M / 8][kgs][8][4] bytes of x ^ 0x80.
int64_t pack_a_scalar(const GemmArgs& g, int64_t kgs, uint8_t** apack) {
  const int64_t mpanels = ceil_div(g.M, kMR), apanel = kgs * kMR * kGroup;
  uint8_t* out = static_cast<uint8_t*>(ThreadScratch::get(std::max<int64_t>(1, mpanels * apanel)));
  *apack = out;
  std::vector<int8_t> tmp(static_cast<size_t>(std::max<int64_t>(1, g.K)));
  std::memset(out, 0, static_cast<size_t>(mpanels * apanel));
  for (int64_t m = 0; m < g.M; ++m) {
    int64_t cs;
    const int8_t* src = a_row(g, m, tmp.data(), &cs);
    if (src == nullptr) return m;
    uint8_t* d = out + (m / kMR) * apanel + (m % kMR) * kGroup;
    for (int64_t k = 0; k < g.K; ++k)
      d[(k / kGroup) * (kMR * kGroup) + k % kGroup] = static_cast<uint8_t>(src[k * cs]) ^ 0x80u;
  }
  return -1;
}

// Threads for `macs` multiply-adds: VNNI does ~4x the fp32 kernels' work per cycle, so the
// one-thread bound of bsr/split.h (2^20 FMAs) is scaled by 4.
int threads_of(double macs) { return bsr::threads_for(macs / 4, at::in_parallel_region() ? 1 : at::get_num_threads()); }

}  // namespace

namespace {

enum class Tiles { kVnni, kEmulated, kAvx2 };

int64_t bsr_gemm(const BsrGemmArgs& p, Tiles kind) {
  const bool emulated = kind != Tiles::kVnni;  // the scalar packer (no AVX-512 there)
  const GemmArgs& g = p.g;
  const BsrWeightView& w = p.w;
  const int64_t kgb = w.bk / kGroup, kgs = w.nbc * kgb;
  const int64_t apanel = kgs * kMR * kGroup, mt = ceil_div(g.M, kMR);
  uint8_t* apack = nullptr;
  const int64_t bad = emulated ? pack_a_scalar(g, kgs, &apack) : vnni::pack_a(g, kgs, &apack);
  if (bad >= 0) return bad;
  const TileFn(&tiles)[kMR][kNV] = kind == Tiles::kVnni ? kTiles : kind == Tiles::kAvx2 ? kAvx2Tiles : kEmulatedTiles;

  const int T = threads_of(static_cast<double>(g.M) * w.nnz * w.bn * w.bk);
  const int64_t panels = w.bn / kPanel;
  const auto shares = bsr::split_work(w.nbr, mt, T, [&](int64_t r) {
    return (w.row_ptr[r + 1] - w.row_ptr[r]) * kgb * panels + bsr::kTileOverhead;
  });
  const int64_t chunk = std::max<int64_t>(1, kChunkBytes / apanel);
  parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
    for (int64_t sh = b; sh < e; ++sh) {
      Segments s;
      s.a_col = kgb * kMR * kGroup, s.b_block = w.block_bytes(), s.pb = w.panel_bytes(), s.kgb = kgb;
      s.col_idx = w.col_idx;
      avx512::TileCtx t;
      t.e = &g.e;
      t.ldo = g.N;
      auto body = [&](int64_t r, int64_t i) {
        s.a = apack + i * apanel;
        s.j0 = w.row_ptr[r], s.j1 = w.row_ptr[r + 1];
        t.m0 = i * kMR;
        t.rows = static_cast<int>(std::min<int64_t>(kMR, g.M - t.m0));
        for (int64_t p0 = 0; p0 < panels; p0 += kNV) {
          t.n0 = r * w.bn + p0 * kPanel;
          if (t.n0 >= g.N) break;  // the padding of the last block row
          const int64_t np = std::min<int64_t>({kNV, panels - p0, ceil_div(g.N - t.n0, kPanel)});
          t.cols = static_cast<int>(std::min<int64_t>(np * kPanel, g.N - t.n0));
          t.comp = w.comp + t.n0;
          s.b = w.data + p0 * s.pb;
          tiles[t.rows - 1][np - 1](s, t);
        }
      };
      bsr::grouped_walk(shares[sh], kGroupBytes, chunk,
                        [&](int64_t r) { return (w.row_ptr[r + 1] - w.row_ptr[r]) * w.block_bytes(); },
                        [](int64_t, int64_t, int64_t) {}, body);
    }
  });
  return -1;
}

}  // namespace

int64_t bsr_gemm_vnni(const BsrGemmArgs& p) { return bsr_gemm(p, Tiles::kVnni); }
int64_t bsr_gemm_vnni_emulated(const BsrGemmArgs& p) { return bsr_gemm(p, Tiles::kEmulated); }
int64_t bsr_gemm_avx2(const BsrGemmArgs& p) { return bsr_gemm(p, Tiles::kAvx2); }

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t bsr_gemm_vnni(const BsrGemmArgs& p) { return bsr_gemm_portable(p); }
int64_t bsr_gemm_vnni_emulated(const BsrGemmArgs& p) { return bsr_gemm_portable(p); }
int64_t bsr_gemm_avx2(const BsrGemmArgs& p) { return bsr_gemm_portable(p); }
}}}
#endif

// The AMX int8 GEMM (tdpbssd, s8 x s8 -> int32), compiled twice: against the real tile
// instructions (int8_amx.cpp, Sapphire Rapids and later) and against the scalar emulation
// (int8_amx_emulated.cpp: ../amx_emulation.h + amx_int8_emulation.h), so the tiling, the
// packing and the per-thread tile configuration are tested on machines without AMX.
//
// The including file defines FASTGAN_I8_AMX_FEATURES (the target attribute string) and has
// the _tile_* intrinsics in scope (real or emulated).
//
// Micro-tile 32 x 32 of C = 2 x 2 tiles of 16 x 16 int32 (tmm0..3). Per 64-k step it loads
// A rows 0-15 / 16-31 (tmm4, tmm5: 16 rows x 64 bytes from the packed A, stride Kp) and B
// panels p / p + 1 (tmm6, tmm7: 16 rows of 4 k x 16 columns = 1 KiB of the packed blob,
// stride 64, int8/packed_weight.h) and issues 4 TDPBSSD. Ragged edges: 16-row and 16-column
// variants (MT, NT = 1) and zero padding (k to 64 in the blob and in A; rows to 16 in A).
// A float A (int8_linear_dynamic_fwd) is quantised per token straight into the packed rows.
// All 8 tiles are 16 rows x 64 bytes, so one configuration serves every variant. After the
// whole K the tiles are stored to a 4 KiB stack buffer and the AVX-512 epilogue
// (epilogue_avx512.h) runs row by row: tiles have no element-wise arithmetic.
//
// Facts this relies on that could NOT be checked on AMX hardware (written on a Zen 4; the
// emulation encodes our reading of the SDM and cannot catch a misreading): the LDTILECFG
// layout and palette 1 limits; TDPBSSD's operand order (dst, A, B) and B as rows of 4 k x N
// columns; tile state per thread (configured in every parallel worker, released after);
// the compiler barriers around the tile loads and stores (GCC's _tile_loadd / _tile_stored
// asm has no memory clobber).
// The blocking (whole K per micro-tile, B panel pair reused across the rows of A from L2)
// is not tuned: it has never run on hardware.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../parallel.h"
#include "epilogue_avx512.h"
#include "int8.h"

#ifndef FASTGAN_I8_AMX_FEATURES
#error "define FASTGAN_I8_AMX_FEATURES before including amx_int8_kernel.h"
#endif
#define FASTGAN_I8_AMX_TARGET __attribute__((target(FASTGAN_I8_AMX_FEATURES)))

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

constexpr int kAmxRows = 32, kAmxCols = 32;

static FASTGAN_I8_AMX_TARGET void amx_thread_begin() {
  alignas(64) uint8_t cfg[64] = {};
  cfg[0] = 1;  // palette 1
  for (int t = 0; t < 8; ++t) {
    cfg[16 + 2 * t] = 64;  // colsb[t] = 64 bytes (uint16, little-endian)
    cfg[48 + t] = 16;      // rows[t]
  }
  _tile_loadconfig(cfg);
}
static FASTGAN_I8_AMX_TARGET void amx_thread_end() { _tile_release(); }

struct AmxThreadGuard {
  AmxThreadGuard() { amx_thread_begin(); }
  ~AmxThreadGuard() { amx_thread_end(); }
};

// MT row tiles x NT column tiles (1 or 2 each) of C over the whole K (kblocks steps of 64).
template <int MT, int NT>
static FASTGAN_I8_AMX_TARGET __attribute__((noinline)) void amx_tile(int64_t kblocks, const int8_t* a, int64_t lda,
                                                                     const int8_t* b, int64_t pb,
                                                                     const avx512::TileCtx& t) {
  __asm__ volatile("" ::: "memory");  // the packed A is in memory before TILELOADD
  _tile_zero(0);
  if constexpr (NT == 2) _tile_zero(1);
  if constexpr (MT == 2) _tile_zero(2);
  if constexpr (MT == 2 && NT == 2) _tile_zero(3);
  for (int64_t kb = 0; kb < kblocks; ++kb) {
    _tile_loadd(4, a + kb * kTileK, lda);
    if constexpr (MT == 2) _tile_loadd(5, a + 16 * lda + kb * kTileK, lda);
    _tile_loadd(6, b + kb * kTileK * kPanel, kPanel * kGroup);
    if constexpr (NT == 2) _tile_loadd(7, b + pb + kb * kTileK * kPanel, kPanel * kGroup);
    _tile_dpbssd(0, 4, 6);
    if constexpr (NT == 2) _tile_dpbssd(1, 4, 7);
    if constexpr (MT == 2) _tile_dpbssd(2, 5, 6);
    if constexpr (MT == 2 && NT == 2) _tile_dpbssd(3, 5, 7);
  }
  alignas(64) int32_t buf[kAmxRows][kAmxCols];
  _tile_stored(0, &buf[0][0], sizeof(buf[0]));
  if constexpr (NT == 2) _tile_stored(1, &buf[0][16], sizeof(buf[0]));
  if constexpr (MT == 2) _tile_stored(2, &buf[16][0], sizeof(buf[0]));
  if constexpr (MT == 2 && NT == 2) _tile_stored(3, &buf[16][16], sizeof(buf[0]));
  __asm__ volatile("" ::: "memory");  // TILESTORED has no memory clobber either: read buf after it
  avx512::TileCtx row = t;
  row.rows = 1;
  for (int r = 0; r < t.rows; ++r) {
    row.m0 = t.m0 + r;
    __m512i c[1][NT];
    c[0][0] = _mm512_load_si512(buf[r]);
    if constexpr (NT == 2) c[0][1] = _mm512_load_si512(buf[r] + 16);
    avx512::epilogue<1, NT>(c, row);
  }
}

// Rows [m0, m0 + 16) of A as 16 rows of kp bytes (zero padded) for TILELOADD; a float A is
// quantised straight into them (a_row). Returns the first row holding NaN / Inf, or -1.
static FASTGAN_I8_AMX_TARGET int64_t amx_pack_rows(const GemmArgs& g, int64_t m0, int64_t kp, int8_t* dst) {
  for (int r = 0; r < 16; ++r, dst += kp) {
    const int64_t m = m0 + r;
    int64_t k = 0;
    if (m < g.M) {
      int64_t cs;
      const int8_t* src = a_row(g, m, dst, &cs);
      if (src == nullptr) return m;
      if (src != dst) {
        if (cs == 1) {
          std::memcpy(dst, src, static_cast<size_t>(g.K));
        } else {
          for (int64_t j = 0; j < g.K; ++j) dst[j] = src[j * cs];
        }
      }
      k = g.K;
    }
    std::memset(dst + k, 0, static_cast<size_t>(kp - k));
  }
  return -1;
}

static int64_t run_amx(const GemmArgs& g) {
  const int64_t kp = g.w.kp, kblocks = kp / kTileK;
  const int64_t groups = ceil_div(g.M, 16);
  int8_t* apack = static_cast<int8_t*>(ThreadScratch::get(std::max<int64_t>(64, groups * 16 * kp)));
  FirstBadRow bad;
  parallel_for(0, groups, std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, 16 * kp)),
               [&](int64_t b, int64_t e) {
                 for (int64_t i = b; i < e; ++i) {
                   const int64_t r = amx_pack_rows(g, i * 16, kp, apack + i * 16 * kp);
                   if (r >= 0) {  // the later rows of this range can only come later
                     bad.note(r);
                     return;
                   }
                 }
               });
  if (bad.any()) return bad.row();

  const int64_t nblocks = ceil_div(g.w.panels, 2), mtiles = ceil_div(g.M, kAmxRows);
  const Split s = split_work(g.M, g.K, nblocks, kAmxCols, kAmxRows);
  const int64_t pb = g.w.panel_bytes();
  parallel_for(0, s.tasks, s.grain, [&](int64_t b, int64_t e) {
    AmxThreadGuard tiles;  // tile configuration is per thread
    avx512::TileCtx t;
    t.e = &g.e;
    t.ldo = g.e.ld(g.N);
    for (int64_t task = b; task < e; ++task) {
      const int64_t nb = task / s.msplit, part = task % s.msplit;
      const int64_t p0 = nb * 2;
      const bool two_cols = p0 + 1 < g.w.panels;
      const int64_t i0 = part * mtiles / s.msplit, i1 = (part + 1) * mtiles / s.msplit;
      t.n0 = p0 * kPanel;
      t.cols = static_cast<int>(std::min<int64_t>(kAmxCols, g.N - t.n0));
      const int8_t* bp = g.w.data + p0 * pb;
      for (int64_t i = i0; i < i1; ++i) {
        t.m0 = i * kAmxRows;
        t.rows = static_cast<int>(std::min<int64_t>(kAmxRows, g.M - t.m0));
        const int8_t* ap = apack + t.m0 * kp;
        if (t.rows > 16) {
          two_cols ? amx_tile<2, 2>(kblocks, ap, kp, bp, pb, t) : amx_tile<2, 1>(kblocks, ap, kp, bp, pb, t);
        } else {
          two_cols ? amx_tile<1, 2>(kblocks, ap, kp, bp, pb, t) : amx_tile<1, 1>(kblocks, ap, kp, bp, pb, t);
        }
      }
    }
  });
  return -1;
}

}  // namespace
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#undef FASTGAN_I8_AMX_TARGET
#endif  // __x86_64__

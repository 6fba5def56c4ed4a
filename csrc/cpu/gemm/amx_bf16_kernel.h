// The AMX bf16 GEMM traits (driver.h), compiled twice: against the real tile
// instructions (gemm_amx_bf16.cpp, Sapphire Rapids and later) and against the scalar
// emulation (gemm_amx_bf16_emulated.cpp, amx_emulation.h) so the tiling, packing and
// per-thread configuration are tested on machines without AMX.
//
// The including file defines FASTGAN_AMX_FEATURES (the target attribute string) and has
// the _tile_* intrinsics in scope (real or emulated).
//
// Micro-tile 32 x 32 of C = 2 x 2 tiles of 16 x 16 fp32 (tmm0..3); per 32-k step it loads
// A rows 0-15 / 16-31 (tmm4, tmm5: 16 rows x 32 bf16) and B columns 0-15 / 16-31 (tmm6,
// tmm7: 16 k-pairs x 16 columns x 2 bf16, the VNNI layout) and issues 4 TDPBF16PS. Every
// tile is 16 rows x 64 bytes, so one configuration serves all; ragged edges are zero-
// padded by the packers (k to a multiple of 32, rows and columns to 32). After the k
// block the tiles are stored to a 4 KiB stack buffer and the AVX-512 epilogue
// (epilogue_avx512.h) adds partial sums, bias and activation row by row: tiles have no
// element-wise arithmetic, so this is the one epilogue not done on registers.
//
// Packed layouts (pack_portable.h): A panel RowsBF16 (32 rows x 32 k per 2 KiB block, row
// stride 64 B, as TILELOADD wants); B panel PairsBF16 with P = 32 (k-pair rows of 128 B:
// columns 0-15 at +0, 16-31 at +64).
//
// Facts this code relies on that could NOT be verified on AMX hardware when written
// (the development machine was a Zen 4 without AMX; the emulation encodes our reading of
// the SDM, so it cannot catch a misreading):
//   * the LDTILECFG byte layout and palette 1 limits (8 tiles, 16 rows x 64 B);
//   * TDPBF16PS operand order (dst, A, B) and that B is read as k-pair rows of 2N bf16;
//   * tile state is per thread, so configuring once per at::parallel_for worker (and
//     TILERELEASE after) is enough, and the OMP workers need their own LDTILECFG;
//   * GCC's _tile_loadd has no "memory" clobber (and some versions' _tile_stored neither),
//     so the kernel is noinline, starts with a compiler barrier (packed panels visibly in
//     memory before TILELOADD) and has another after the tile stores;
//   * the blocking (KC/MC/NC below) is a guess from SPR cache sizes, not a measurement.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "driver.h"
#include "epilogue_avx512.h"
#include "pack_avx512.h"

#ifndef FASTGAN_AMX_FEATURES
#error "define FASTGAN_AMX_FEATURES before including amx_bf16_kernel.h"
#endif
#define FASTGAN_AMX_TARGET __attribute__((target(FASTGAN_AMX_FEATURES)))

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

// A panel for AMX: rows of 32 k (RowsBF16, P = 32). Fast case k-contiguous rows; lane-
// contiguous operands (grad_weight's A = grad_out^T) are packed as k-pairs first and the
// 16 words of each row transposed out of them; anything else goes scalar.
static FASTGAN_AMX_TARGET void amx_pack_a(const Operand& src, const Prologue& pro, int lanes, int64_t kc,
                                          int64_t kcp, uint16_t* dst) {
  using namespace avx512;
  const Case c = pack_case(src, pro, lanes, kc);
  if (c == Case::kContiguousK) {
    const int64_t sz = dtype_size(src.dt), ysz = dtype_size(pro.y.dt);
    for (int l = 0; l < 32; ++l) {
      for (int64_t k0 = 0; k0 < kcp; k0 += 16) {
        __m256i w = _mm256_setzero_si256();
        const __mmask16 m = lanes_mask(static_cast<int>(kc - k0));
        if (l < lanes && m) {
          const char* p = src.base + (l * src.ls + k0) * sz;
          w = pro.act == kIdentity
                  ? load16_bf16_bits(p, src.dt, m)
                  : cvt_f32_bf16(load16_pro(p, src.dt, pro, pro.y.base + (l * pro.y.ls + k0) * ysz, m));
        }
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + (k0 >> 5) * 1024 + 32 * l + (k0 & 31)), w);
      }
    }
  } else if (c == Case::kContiguousLanes) {
    alignas(64) float words[256 * 32];  // k-pair x 32 lanes, for kcp <= 512
    for (int64_t kb = 0; kb < kcp; kb += 512) {
      const int64_t kcb = kc - kb < 512 ? kc - kb : 512, kcpb = kcp - kb < 512 ? kcp - kb : 512;
      Operand s = src;
      s.base += kb * src.ks * dtype_size(src.dt);
      Prologue q = pro;
      if (q.act) q.y.base += kb * q.y.ks * dtype_size(q.y.dt);
      pack_pairs<32>(s, q, lanes, kcb, kcpb, reinterpret_cast<uint16_t*>(words));
      float* out = reinterpret_cast<float*>(dst + kb * 32);  // 16 words per row per 32 k
      for (int64_t kp0 = 0; kp0 < kcpb / 2; kp0 += 8) {       // 8 k-pairs x 8 lanes at a time
        for (int l0 = 0; l0 < 32; l0 += 8) {
          __m256 r[8];
          for (int j = 0; j < 8; ++j) r[j] = _mm256_load_ps(words + (kp0 + j) * 32 + l0);
          transpose8x8(r);  // r[i] = lane l0 + i, k-pairs kp0..kp0+7
          for (int i = 0; i < 8; ++i)
            _mm256_store_ps(out + (kp0 >> 4) * 512 + (l0 + i) * 16 + (kp0 & 15), r[i]);
        }
      }
    }
  } else {
    pack_generic<RowsBF16>(src, pro, 32, lanes, kc, kcp, dst);
  }
}

struct AmxBf16Traits {
  using Elem = uint16_t;
  static constexpr int MR = 32, NR = 32, KU = 32, NU = 16;
  // SPR: 48 KiB L1d, 2 MiB L2. A and B panels of 32 x 512 bf16 are 32 KiB each; the A
  // block (MC x KC = 256 KiB) sits in L2 and the B block (KC x NC = 1 MiB) in L2 / L3.
  static constexpr int64_t KC = 512, MC = 256, NC = 1024;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t kcp, uint16_t* dst) {
    amx_pack_a(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, kcp, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t kcp, int64_t n0, int cols, uint16_t* dst) {
    avx512::pack_pairs<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, kcp, dst);
  }

  static FASTGAN_AMX_TARGET __attribute__((noinline)) void kernel(int64_t kcp, const uint16_t* a, const uint16_t* b,
                                                                   const TileOut& o) {
    __asm__ volatile("" ::: "memory");  // the packed panels are in memory before TILELOADD
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t kb = 0; kb < kcp / 32; ++kb) {
      const uint16_t* ak = a + kb * 1024;
      const uint16_t* bk = b + kb * 1024;
      _tile_loadd(4, ak, 64);
      _tile_loadd(5, ak + 16 * 32, 64);
      _tile_loadd(6, bk, 128);
      _tile_loadd(7, bk + 32, 128);
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    }
    alignas(64) float buf[32][32];
    _tile_stored(0, &buf[0][0], 128);
    _tile_stored(1, &buf[0][16], 128);
    _tile_stored(2, &buf[16][0], 128);
    _tile_stored(3, &buf[16][16], 128);
    __asm__ volatile("" ::: "memory");  // some compilers' TILESTORED asm lacks a memory clobber
    epilogue(buf, o);
  }

  // Row by row through the shared register epilogue (1 x 1 or 1 x 2 vectors).
  static FASTGAN_AMX_TARGET void epilogue(const float (&buf)[32][32], const TileOut& o) {
    using namespace avx512;
    TileOut row = o;
    row.rows = 1;
    const int64_t esz = dtype_size(o.dtype);
    for (int r = 0; r < o.rows; ++r) {
      row.out = static_cast<char*>(o.out) + r * o.ldc * esz;
      row.acc = o.acc ? o.acc + r * o.ld_acc : nullptr;
      if (o.cols <= 16) {
        const __mmask16 tail = lanes_mask(o.cols);
        __m512 c[1][1] = {{_mm512_load_ps(buf[r])}};
        if (!o.first) c[0][0] = _mm512_add_ps(c[0][0], _mm512_maskz_loadu_ps(tail, row.acc));
        tile_epilogue<1, 1>(c, row, tail);
      } else {
        const __mmask16 tail = lanes_mask(o.cols - 16);
        __m512 c[1][2] = {{_mm512_load_ps(buf[r]), _mm512_load_ps(buf[r] + 16)}};
        if (!o.first) {
          c[0][0] = _mm512_add_ps(c[0][0], _mm512_loadu_ps(row.acc));
          c[0][1] = _mm512_add_ps(c[0][1], _mm512_maskz_loadu_ps(tail, row.acc + 16));
        }
        tile_epilogue<1, 2>(c, row, tail);
      }
    }
  }

  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  // Tile configuration is per thread: every at::parallel_for worker loads it (driver.h).
  static FASTGAN_AMX_TARGET void thread_begin() {
    alignas(64) uint8_t cfg[64] = {};
    cfg[0] = 1;  // palette 1
    for (int t = 0; t < 8; ++t) {
      cfg[16 + 2 * t] = 64;  // colsb[t] = 64 bytes (uint16, little-endian)
      cfg[48 + t] = 16;      // rows[t]
    }
    _tile_loadconfig(cfg);
  }
  static FASTGAN_AMX_TARGET void thread_end() { _tile_release(); }
};

}  // namespace
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#undef FASTGAN_AMX_TARGET
#endif  // __x86_64__

// Scalar emulation of the AMX tile intrinsics the bf16 GEMM uses, so its tiling, packing
// and per-thread configuration are tested on machines without AMX (the AMX kernel is
// compiled a second time against this file: gemm_amx_bf16_emulated.cpp).
//
// Include it INSTEAD of relying on the real intrinsics: after <immintrin.h> it replaces
// _tile_loadconfig, _tile_release, _tile_loadd, _tile_stored, _tile_zero and
// _tile_dpbf16ps with the functions below (same arguments; tile ids are plain ints).
//
// Modelled from the Intel SDM / intrinsics guide, as far as this kernel relies on it:
//   * the 64-byte LDTILECFG operand: byte 0 palette (1 = 8 tiles of up to 16 rows x 64 B),
//     byte 1 start_row, bytes 16..47 colsb[16] (uint16), bytes 48..63 rows[16];
//   * configuration is per thread: a tile instruction in a thread with no valid
//     configuration faults (#UD) - here it throws, naming the instruction;
//   * LDTILECFG zeroes every tile; TILERELEASE returns to the unconfigured state;
//   * TILELOADD reads rows x colsb bytes at base + r * stride and zeroes the rest of the
//     tile; TILESTORED writes rows x colsb bytes;
//   * TDPBF16PS C += A * B with A rows x (2K bf16), B K rows x (2N bf16, VNNI pairs),
//     C rows x N fp32; shape rules C.rows == A.rows, A.colsb == 4 * B.rows,
//     C.colsb == B.colsb are checked; for each k the two products of a pair are added to
//     the fp32 accumulator one after the other, in the SDM pseudo-code's order.
// Not modelled (and not verifiable on the machines this was written on): the hardware's
// denormal handling (DAZ on inputs / FTZ on outputs) and its exact rounding of the pair
// sum; the tests compare with tolerances, so neither matters for them.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace fastgan {
namespace cpu {
namespace amx_emu {

struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "LDTILECFG reads 64 bytes");

struct TileState {
  bool configured = false;
  TileConfig cfg{};
  alignas(64) uint8_t tile[8][16][64];
};

inline TileState& state() {
  static thread_local TileState s;
  return s;
}

[[noreturn]] inline void fault(const std::string& what) {
  throw std::runtime_error("AMX emulation: " + what);
}

inline void check_tile(const char* insn, int t) {
  const TileState& s = state();
  if (!s.configured) fault(std::string(insn) + " without a tile configuration in this thread");
  if (t < 0 || t > 7) fault(std::string(insn) + ": tile index out of range");
  if (s.cfg.rows[t] == 0 || s.cfg.colsb[t] == 0) fault(std::string(insn) + ": tile " + std::to_string(t) +
                                                      " is not configured");
}

inline void tile_loadconfig(const void* config) {
  TileState& s = state();
  std::memcpy(&s.cfg, config, sizeof(TileConfig));
  if (s.cfg.palette_id == 0) {  // palette 0 = initialise to the unconfigured state
    s.configured = false;
    return;
  }
  if (s.cfg.palette_id != 1) fault("LDTILECFG: unsupported palette");
  for (int t = 0; t < 16; ++t) {
    const bool used = t < 8;
    if (!used && (s.cfg.rows[t] || s.cfg.colsb[t])) fault("LDTILECFG: tiles 8..15 must be zero in palette 1");
    if (used && (s.cfg.rows[t] > 16 || s.cfg.colsb[t] > 64)) fault("LDTILECFG: tile larger than 16 x 64 B");
  }
  s.configured = true;
  std::memset(s.tile, 0, sizeof(s.tile));
}

inline void tile_release() {
  state().configured = false;
  std::memset(&state().cfg, 0, sizeof(TileConfig));
}

inline void tile_loadd(int t, const void* base, int64_t stride) {
  check_tile("TILELOADD", t);
  TileState& s = state();
  std::memset(s.tile[t], 0, sizeof(s.tile[t]));
  for (int r = 0; r < s.cfg.rows[t]; ++r)
    std::memcpy(s.tile[t][r], static_cast<const uint8_t*>(base) + r * stride, s.cfg.colsb[t]);
}

inline void tile_stored(int t, void* base, int64_t stride) {
  check_tile("TILESTORED", t);
  const TileState& s = state();
  for (int r = 0; r < s.cfg.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, s.tile[t][r], s.cfg.colsb[t]);
}

inline void tile_zero(int t) {
  check_tile("TILEZERO", t);
  std::memset(state().tile[t], 0, sizeof(state().tile[t]));
}

inline float bf16_bits_to_f32(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void tile_dpbf16ps(int c, int a, int b) {
  check_tile("TDPBF16PS", c), check_tile("TDPBF16PS", a), check_tile("TDPBF16PS", b);
  TileState& s = state();
  const TileConfig& g = s.cfg;
  if (c == a || c == b || a == b) fault("TDPBF16PS: tile operands must be distinct");
  if (g.rows[c] != g.rows[a] || g.colsb[a] != 4 * g.rows[b] || g.colsb[c] != g.colsb[b] || g.colsb[c] % 4)
    fault("TDPBF16PS: incompatible tile shapes");
  const int pairs = g.colsb[a] / 4, cols = g.colsb[c] / 4;
  for (int m = 0; m < g.rows[c]; ++m) {
    float acc[16];
    std::memcpy(acc, s.tile[c][m], sizeof(acc));
    for (int k = 0; k < pairs; ++k) {
      const float a0 = bf16_bits_to_f32(&s.tile[a][m][4 * k]), a1 = bf16_bits_to_f32(&s.tile[a][m][4 * k + 2]);
      for (int n = 0; n < cols; ++n) {
        acc[n] += a0 * bf16_bits_to_f32(&s.tile[b][k][4 * n]);
        acc[n] += a1 * bf16_bits_to_f32(&s.tile[b][k][4 * n + 2]);
      }
    }
    std::memcpy(s.tile[c][m], acc, 4 * cols);
  }
}

}  // namespace amx_emu
}  // namespace cpu
}  // namespace fastgan

// Replace the real intrinsics (macros and inline functions of GCC's / Clang's headers).
#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadconfig(config) ::fastgan::cpu::amx_emu::tile_loadconfig(config)
#define _tile_release() ::fastgan::cpu::amx_emu::tile_release()
#define _tile_loadd(t, base, stride) ::fastgan::cpu::amx_emu::tile_loadd(t, base, stride)
#define _tile_stored(t, base, stride) ::fastgan::cpu::amx_emu::tile_stored(t, base, stride)
#define _tile_zero(t) ::fastgan::cpu::amx_emu::tile_zero(t)
#define _tile_dpbf16ps(c, a, b) ::fastgan::cpu::amx_emu::tile_dpbf16ps(c, a, b)

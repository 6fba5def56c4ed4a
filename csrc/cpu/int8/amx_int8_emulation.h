// Scalar TDPBSSD for the AMX emulation (../amx_emulation.h), so the int8 AMX kernel's
// tiling, packing and per-thread configuration are tested on machines without AMX. An
// addition next to that file's TDPBF16PS, kept here so the bf16 owner's file stays as is.
//
// Include after ../amx_emulation.h. Modelled from the Intel SDM's TDPBSSD pseudo-code:
// C (rows x N int32) += A (rows x 4K signed bytes) . B (K rows x 4N signed bytes, groups of
// 4 k per column, the VNNI layout); for each k the 4 byte products are summed in int32 and
// added to C with wrap-around (no saturation). Same shape rules as TDPBF16PS: C.rows ==
// A.rows, A.colsb == 4 * B.rows, C.colsb == B.colsb; distinct tiles.
#pragma once

#include <cstdint>
#include <cstring>

#include "../amx_emulation.h"

namespace fastgan {
namespace cpu {
namespace amx_emu {

inline void tile_dpbssd(int c, int a, int b) {
  check_tile("TDPBSSD", c), check_tile("TDPBSSD", a), check_tile("TDPBSSD", b);
  TileState& s = state();
  const TileConfig& g = s.cfg;
  if (c == a || c == b || a == b) fault("TDPBSSD: tile operands must be distinct");
  if (g.rows[c] != g.rows[a] || g.colsb[a] != 4 * g.rows[b] || g.colsb[c] != g.colsb[b] || g.colsb[c] % 4)
    fault("TDPBSSD: incompatible tile shapes");
  const int groups = g.colsb[a] / 4, cols = g.colsb[c] / 4;
  for (int m = 0; m < g.rows[c]; ++m) {
    uint32_t acc[16];
    std::memcpy(acc, s.tile[c][m], sizeof(acc));
    for (int k = 0; k < groups; ++k) {
      const int8_t* av = reinterpret_cast<const int8_t*>(&s.tile[a][m][4 * k]);
      for (int n = 0; n < cols; ++n) {
        const int8_t* bv = reinterpret_cast<const int8_t*>(&s.tile[b][k][4 * n]);
        const int32_t dot = av[0] * bv[0] + av[1] * bv[1] + av[2] * bv[2] + av[3] * bv[3];
        acc[n] += static_cast<uint32_t>(dot);  // wraps mod 2^32, as the hardware
      }
    }
    std::memcpy(s.tile[c][m], acc, 4 * cols);
  }
}

}  // namespace amx_emu
}  // namespace cpu
}  // namespace fastgan

#undef _tile_dpbssd
#define _tile_dpbssd(c, a, b) ::fastgan::cpu::amx_emu::tile_dpbssd(c, a, b)

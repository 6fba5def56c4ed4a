// The parallel A packing loop shared by the int8 GEMMs that pack A into row micro-panels (the
// VNNI kernels' u8 panels, vnni_avx512.h, and the AVX2 kernel's int16 panels, ../int8_avx2.cpp):
// the panel layout and the per-row packer are the caller's, the rest (scratch, zeroing, the
// per-token quantisation of a float A, the first non-finite row) is here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../parallel.h"
#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {

// All of A as ceil(M / mr) micro-panels of `panel_bytes` each, packed in parallel into the
// calling thread's scratch (*out; the workers only read it). Each panel is zeroed (the k past K
// and the rows past M stay zero), then every row of it goes through
// pack_row(src, cs, panel, r): A's row i * mr + r, element k at src[k * cs] (quantised per
// token first when A is float: a_row). Returns the first row of a float A holding NaN / Inf
// (the packing is then incomplete), or -1.
template <class PackRow>
int64_t pack_a_panels(const GemmArgs& g, int mr, int64_t panel_bytes, void** out, const PackRow& pack_row) {
  const int64_t mpanels = ceil_div(g.M, mr);
  char* base = static_cast<char*>(ThreadScratch::get(std::max<int64_t>(1, mpanels * panel_bytes)));
  *out = base;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, panel_bytes));
  FirstBadRow bad;
  parallel_for(0, mpanels, grain, [&](int64_t b, int64_t e) {
    int8_t* tmp = g.fx ? static_cast<int8_t*>(ThreadScratch::get(std::max<int64_t>(1, g.K), ThreadScratch::kRow))
                       : nullptr;
    for (int64_t i = b; i < e; ++i) {
      char* panel = base + i * panel_bytes;
      std::memset(panel, 0, static_cast<size_t>(panel_bytes));
      const int rows = static_cast<int>(std::min<int64_t>(mr, g.M - i * mr));
      for (int r = 0; r < rows; ++r) {
        int64_t cs;
        const int8_t* src = a_row(g, i * mr + r, tmp, &cs);
        if (src == nullptr) {  // the later rows of this range can only come later
          bad.note(i * mr + r);
          return;
        }
        pack_row(src, cs, panel, r);
      }
    }
  });
  return bad.row();
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

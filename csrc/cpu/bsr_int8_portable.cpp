// The portable block-sparse int8 path: plain C++ for any machine (x86-64 without
// AVX512-VNNI, aarch64). One row of A at a time against the kept blocks of each block row,
// read from the same packed blob as the VNNI path (int8/bsr_packed.h), signed x signed (no
// compensation), then the scalar epilogue of the dense portable path (store_portable).
#include <algorithm>
#include <vector>

#include "int8/bsr_packed.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {

int64_t bsr_gemm_portable(const BsrGemmArgs& p) {
  const GemmArgs& g = p.g;
  const BsrWeightView& w = p.w;
  const int64_t Kp = w.nbc * w.bk, panels = w.bn / kPanel;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, w.nnz * w.bn * w.bk));
  FirstBadRow bad;
  parallel_for(0, g.M, grain, [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> a(static_cast<size_t>(std::max<int64_t>(Kp, 1)), 0), row(static_cast<size_t>(g.K));
    for (int64_t m = m0; m < m1; ++m) {
      int64_t cs;
      const int8_t* src = a_row(g, m, row.data(), &cs);  // a float A: quantised into row
      if (src == nullptr) {  // the later rows of this range can only come later
        bad.note(m);
        return;
      }
      for (int64_t k = 0; k < g.K; ++k) a[k] = src[k * cs];  // a[K, Kp) stays zero
      for (int64_t r = 0; r < w.nbr; ++r) {
        for (int64_t pn = 0; pn < panels; ++pn) {
          const int64_t n0 = r * w.bn + pn * kPanel;
          if (n0 >= g.N) break;
          int32_t acc[kPanel] = {};
          for (int64_t j = w.row_ptr[r]; j < w.row_ptr[r + 1]; ++j) {
            const int8_t* b = w.data + j * w.block_bytes() + pn * w.panel_bytes();
            const int8_t* ak = a.data() + w.col_idx[j] * w.bk;
            for (int64_t kg = 0; kg < w.bk / kGroup; ++kg, b += kPanel * kGroup, ak += kGroup)
              for (int c = 0; c < kPanel; ++c)
                acc[c] += ak[0] * b[4 * c] + ak[1] * b[4 * c + 1] + ak[2] * b[4 * c + 2] + ak[3] * b[4 * c + 3];
          }
          const int cols = static_cast<int>(std::min<int64_t>(kPanel, g.N - n0));
          for (int c = 0; c < cols; ++c) store_portable(g.e, g.N, m, n0 + c, acc[c]);
        }
      }
    }
  });
  return bad.row();
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

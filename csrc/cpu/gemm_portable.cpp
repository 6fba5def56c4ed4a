// The portable GEMM path: plain C++ compiled for the baseline target (x86-64 SSE2 or
// aarch64 NEON through auto-vectorisation), correct on any machine. It uses the same
// blocked driver as the vector paths with a 4 x 16 fp32 micro-tile (the accumulators
// fit 16 SSE / 32 NEON registers) and the scalar packers.
#include <cstdint>

#include "activation.h"
#include "gemm/driver.h"
#include "gemm/pack_portable.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

struct PortableTraits {
  using Elem = float;
  static constexpr int MR = 4, NR = 16, KU = 1, NU = 16;
  // 4 x 256 A panel (4 KiB) and 256 x 16 B panel (16 KiB) stay in L1; the A block of
  // 128 x 256 (128 KiB) and the B block of 256 x 1024 (1 MiB) sit in L2 / L3.
  static constexpr int64_t KC = 256, MC = 128, NC = 1024;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t kcp, float* dst) {
    pack_generic<PanelF32>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), MR, rows, kc, kcp, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t kcp, int64_t n0, int cols, float* dst) {
    pack_generic<PanelF32>(operand_b(p.b, k0, n0), Prologue{}, NR, cols, kc, kcp, dst);
  }

  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    float c[MR][NR];
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j)
        c[r][j] = (!o.first && r < o.rows && j < o.cols) ? o.acc[r * o.ld_acc + j] : 0.f;
    for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
      for (int r = 0; r < MR; ++r) {
        const float ar = a[r];
        for (int j = 0; j < NR; ++j) c[r][j] += ar * b[j];
      }
    }
    for (int r = 0; r < o.rows; ++r)
      for (int j = 0; j < o.cols; ++j) finish_scalar(o, r, j, c[r][j]);
  }

  static Region b_region(const Problem&, int64_t, int64_t, int64_t, int) { return {}; }
  static void thread_begin() {}
  static void thread_end() {}
};

}  // namespace

void run_portable(const Problem& p) { drive<PortableTraits>(p); }

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

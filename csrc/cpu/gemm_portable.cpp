// The portable GEMM path: plain C++ compiled for the baseline target (x86-64 SSE2 or
// aarch64 NEON through auto-vectorisation), correct on any machine. It uses the same
// blocked driver as the vector paths with a 4 x 8 fp32 micro-tile (the accumulators take
// 8 of the 16 SSE / 32 NEON registers) and the scalar packers.
#include <algorithm>
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
  static constexpr int MR = 4, NR = 8, KU = 1, NU = 8;
  // 4 x 256 A panel (4 KiB) and 256 x 8 B panel (8 KiB) stay in L1; the A block of
  // 128 x 256 (128 KiB) and the B block of 256 x 1024 (1 MiB) sit in L2 / L3.
  static constexpr int64_t KC = 256, MC = 128, NC = 1024;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t kcp, float* dst) {
    pack_generic<PanelF32>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), MR, rows, kc, kcp, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t kcp, int64_t n0, int cols, float* dst) {
    pack_generic<PanelF32>(operand_b(p.b, k0, n0), Prologue{}, NR, cols, kc, kcp, dst);
  }

  // The 4 x 8 accumulators (8 SSE / NEON registers) see only fixed-trip loops, so the
  // compiler keeps them in registers; partial sums are added on the way out.
  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    float c[MR][NR] = {};
    for (int64_t k = 0; k < kc; ++k, a += MR, b += NR)
      for (int r = 0; r < MR; ++r)
        for (int j = 0; j < NR; ++j) c[r][j] += a[r] * b[j];
    for (int r = 0; r < o.rows; ++r)
      for (int j = 0; j < o.cols; ++j) finish_scalar(o, r, j, o.first ? c[r][j] : c[r][j] + o.acc[r * o.ld_acc + j]);
  }

  static Region b_region(const Problem&, int64_t, int64_t, int64_t, int) { return {}; }
  static void thread_begin() {}
  static void thread_end() {}
};

template <DType DT>
inline float load_t(const char* p) {
  return load_scalar(p, DT);  // DT is a constant: the dtype switch folds away
}

template <DType DT, int ACT>
void column_sums_t(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, float slope, float* out) {
  constexpr int64_t kBlock = 256;  // fp32 accumulators kept in L1 across the rows
  constexpr int64_t sz = DT == DType::kF32 ? 4 : 2;
  const int64_t ysz = dtype_size(y.dtype);
  float acc[kBlock];
  for (int64_t b0 = n0; b0 < n1; b0 += kBlock) {
    const int64_t nb = std::min(kBlock, n1 - b0);
    for (int64_t j = 0; j < nb; ++j) acc[j] = 0.f;
    for (int64_t m = 0; m < M; ++m) {
      const char* gr = static_cast<const char*>(g.data) + (m * g.rs + b0 * g.cs) * sz;
      const char* yr = ACT ? static_cast<const char*>(y.data) + (m * y.rs + b0 * y.cs) * ysz : nullptr;
      for (int64_t j = 0; j < nb; ++j) {
        const float v = load_t<DT>(gr + j * g.cs * sz);
        acc[j] += ACT ? grad_from_output_scalar<ACT>(v, load_scalar(yr + j * y.cs * ysz, y.dtype), slope) : v;
      }
    }
    for (int64_t j = 0; j < nb; ++j) out[b0 - n0 + j] = acc[j];
  }
}

template <DType DT>
void column_sums_dt(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                    float* out) {
  cpu::dispatch_activation(dact, [&](auto a) { column_sums_t<DT, decltype(a)::value>(M, n0, n1, g, y, slope, out); });
}

}  // namespace

void run_portable(const Problem& p) { drive<PortableTraits>(p); }

void column_sums_portable(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                          float* out) {
  switch (g.dtype) {
    case DType::kBF16: return column_sums_dt<DType::kBF16>(M, n0, n1, g, y, dact, slope, out);
    case DType::kF16: return column_sums_dt<DType::kF16>(M, n0, n1, g, y, dact, slope, out);
    default: return column_sums_dt<DType::kF32>(M, n0, n1, g, y, dact, slope, out);
  }
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

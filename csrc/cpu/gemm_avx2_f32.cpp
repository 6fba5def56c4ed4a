// The AVX2 + FMA GEMM path (x86-64 without AVX-512: Haswell .. Alder Lake, Zen 1-3):
// 6 x 16 fp32 micro-tile (gemm/microkernel_avx2.h). bf16 and fp16 operands are
// converted to fp32 while packed (gemm/pack_avx2.h). Same blocked driver, same epilogue
// contract as the AVX-512 path (gemm/epilogue_avx2.h). Also the AVX2 bias-gradient
// column sums.
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "activation.h"
#include "gemm/driver.h"
#include "gemm/microkernel_avx2.h"
#include "gemm/pack_avx2.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

using namespace ::fastgan::cpu::gemm::avx2;  // kMR = 6, kNR = 16 (microkernel_avx2.h)

template <int R, int V>
static FASTGAN_AVX2_TARGET void kernel_avx2(int64_t kc, const float* a, const float* b, const TileOut& o) {
  __m256 c[R][V];
  tile_start<R, V>(c, o);
  NoPrefetch pf;
  f32_steps<R, V>(c, kc, a, b, kNR, pf);
  tile_epilogue<R, V>(c, o);
}

// The bias gradient: 64 columns of fp32 accumulators stay in 8 ymm registers (half the
// register file: the loads and the activation derivative need the rest) while the rows
// stream past (G and Y rows contiguous; column_sums() checks that).
template <DType DT, int ACT>
static FASTGAN_AVX2_TARGET void column_sums_t(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y,
                                              float slope, float* out) {
  constexpr int kVecs = 8, kCols = 8 * kVecs;
  constexpr int64_t sz = DT == DType::kF32 ? 4 : 2;
  const int64_t ysz = dtype_size(y.dtype);
  const __m256 vslope = _mm256_set1_ps(slope);
  for (int64_t b0 = n0; b0 < n1; b0 += kCols) {
    const int nb = static_cast<int>(std::min<int64_t>(kCols, n1 - b0));
    __m256 acc[kVecs];
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) acc[v] = _mm256_setzero_ps();
    for (int64_t m = 0; m < M; ++m) {
      const char* gr = static_cast<const char*>(g.data) + (m * g.rs + b0) * sz;
      const char* yr = ACT ? static_cast<const char*>(y.data) + (m * y.rs + b0) * ysz : nullptr;
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v) {
        const int n = vec_lanes(nb, v);
        if (n == 0) break;
        __m256 x = load8(gr + 8 * v * sz, DT, n);
        if (ACT) x = grad_from_output_ps<ACT>(x, load8(yr + 8 * v * ysz, y.dtype, n), vslope);
        acc[v] = _mm256_add_ps(acc[v], x);
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) store8(reinterpret_cast<char*>(out + (b0 - n0) + 8 * v), DType::kF32, acc[v],
                                           vec_lanes(nb, v));
  }
}

template <DType DT>
void column_sums_dt(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                    float* out) {
  cpu::dispatch_activation(dact, [&](auto a) { column_sums_t<DT, decltype(a)::value>(M, n0, n1, g, y, slope, out); });
}

struct Avx2F32Traits {
  using Elem = float;
  static constexpr int MR = kMR, NR = kNR, KU = 1, NU = 8;
  // 6 x 256 A panel (6 KiB) and 256 x 16 B panel (16 KiB) in a 32 KiB L1; A block
  // 144 x 256 (144 KiB) in L2, B block 256 x 2048 (2 MiB) in L3.
  static constexpr int64_t KC = 256, MC = 144, NC = 2048;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t, float* dst) {
    pack_f32<MR>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t, int64_t n0, int cols, float* dst) {
    pack_f32<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, dst);
  }
  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    using Fn = void (*)(int64_t, const float*, const float*, const TileOut&);
    static const Fn table[kMR][2] = {{&kernel_avx2<1, 1>, &kernel_avx2<1, 2>}, {&kernel_avx2<2, 1>, &kernel_avx2<2, 2>},
                                     {&kernel_avx2<3, 1>, &kernel_avx2<3, 2>}, {&kernel_avx2<4, 1>, &kernel_avx2<4, 2>},
                                     {&kernel_avx2<5, 1>, &kernel_avx2<5, 2>}, {&kernel_avx2<6, 1>, &kernel_avx2<6, 2>}};
    table[o.rows - 1][o.cols > 8](kc, a, b, o);
  }
  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  static void thread_begin() {}
  static void thread_end() {}
};

}  // namespace

void run_avx2_f32(const Problem& p) { drive<Avx2F32Traits>(p); }

void column_sums_avx2(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
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

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_avx2_f32(const Problem& p) { run_portable(p); }
void column_sums_avx2(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                      float* out) {
  column_sums_portable(M, n0, n1, g, y, dact, slope, out);
}
}}}
#endif

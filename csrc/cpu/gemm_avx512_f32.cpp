// The AVX-512 fp32 GEMM path: 8 x 48 FMA micro-kernel on fp32 panels. bf16 and fp16
// operands are converted to fp32 while packed (the path for fp16 everywhere, and for
// bf16 where the CPU lacks AVX512-BF16). Compiled for the baseline target: every
// AVX-512 function carries its own target attribute (activation.h).
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include <algorithm>

#include "activation.h"
#include "gemm/driver.h"
#include "gemm/microkernel_avx512.h"
#include "gemm/pack_avx512.h"
#include "gemm/dot_avx512.h"
#include "gemm/small_m_avx512.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

struct Avx512F32Traits {
  using Elem = float;
  static constexpr int MR = avx512::kMR, NR = avx512::kNR, KU = 1, NU = 16;
  // Blocking for Zen 4 (32 KiB L1d, 1 MiB L2 per core, 32 MiB shared L3; SPR: 48 KiB /
  // 2 MiB): the 8 x 1024 A micro-panel (32 KiB) and the 1024 x 48 B micro-panel (192 KiB)
  // stream from L2 at ~9 B/cycle, far below its bandwidth; the A block MC x KC (512 KiB)
  // stays in L2 and the B block KC x NC (4 MiB) in L3. A long k block matters more than
  // L1 residency here: measured on Zen 4, KC = 256 -> 1024 took the large-M shapes from
  // ~95 to ~104 GFLOP/s per core (fewer partial-sum passes and kernel calls per FMA).
  static constexpr int64_t KC = 1024, MC = 128, NC = 1024;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t, float* dst) {
    avx512::pack_f32<MR>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t, int64_t n0, int cols, float* dst) {
    avx512::pack_f32<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, dst);
  }
  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    avx512::kernel_f32(o.rows, o.cols)(kc, a, b, o);
  }
  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  static void thread_begin() {}
  static void thread_end() {}
};

// The bias gradient: 128 columns of fp32 accumulators stay in 8 zmm registers while the
// rows stream past (G and Y rows contiguous; column_sums() checks that).
template <DType DT, int ACT>
static FASTGAN_AVX512_TARGET void column_sums_t(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y,
                                                float slope, float* out) {
  using namespace avx512;
  constexpr int64_t sz = DT == DType::kF32 ? 4 : 2;
  const int64_t ysz = dtype_size(y.dtype);
  const __m512 vslope = _mm512_set1_ps(slope);
  for (int64_t b0 = n0; b0 < n1; b0 += 128) {
    const int nb = static_cast<int>(std::min<int64_t>(128, n1 - b0));
    __m512 acc[8];
    __mmask16 mask[8];
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_ps(), mask[v] = lanes_mask(nb - 16 * v);
    for (int64_t m = 0; m < M; ++m) {
      const char* gr = static_cast<const char*>(g.data) + (m * g.rs + b0) * sz;
      const char* yr = ACT ? static_cast<const char*>(y.data) + (m * y.rs + b0) * ysz : nullptr;
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) {
        if (!mask[v]) break;
        __m512 x = load16t<DT>(gr + 16 * v * sz, mask[v]);
        if (ACT) x = grad_from_output_ps<ACT>(x, load16(yr + 16 * v * ysz, y.dtype, mask[v]), vslope);
        acc[v] = _mm512_add_ps(acc[v], x);
      }
    }
#pragma GCC unroll 8
    for (int v = 0; v < 8; ++v) _mm512_mask_storeu_ps(out + (b0 - n0) + 16 * v, mask[v], acc[v]);
  }
}

template <DType DT>
void column_sums_dt(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                    float* out) {
  cpu::dispatch_activation(dact, [&](auto a) { column_sums_t<DT, decltype(a)::value>(M, n0, n1, g, y, slope, out); });
}

}  // namespace

void run_avx512_f32(const Problem& p) {
  if (avx512::dot_applicable(p)) return avx512::run_dots(p);  // forward with N <= 4 or M <= 4
  if (avx512::wb_applicable(p, DType::kF32)) return avx512::run_wb<false>(p);  // batch 33..64 forward
  drive<Avx512F32Traits>(p);
}

void column_sums_avx512(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
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
void run_avx512_f32(const Problem& p) { run_portable(p); }
void column_sums_avx512(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                        float* out) {
  column_sums_portable(M, n0, n1, g, y, dact, slope, out);
}
}}}
#endif

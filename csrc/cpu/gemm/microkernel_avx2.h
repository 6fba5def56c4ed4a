// The AVX2 + FMA micro-kernel k loop: an R x (8 V) tile of C (R <= 6, V <= 2) in ymm
// accumulators, A a 6-lane fp32 panel ([k][6]), B a panel of fp32 rows ld elements apart.
//
// Why 6 x 16: AVX2 has 16 ymm registers; 12 accumulators + 2 B vectors + 1 broadcast use
// 15 of them, and 12 independent FMA chains cover two FMA ports x 4-5 cycles of latency.
// Per k step: 2 B loads and 6 broadcasts for 12 FMAs.
//
// On its own (like microkernel_avx512.h's f32_steps) so that the dense kernel
// (gemm_avx2_f32.cpp, ld = 16) and the block-sparse tile (bsr/tile_avx2.h, which runs it
// over several (A, B) segments into the same accumulators, ld = 16 or a block's row) share
// it. B is read with unaligned loads (values read in place need not be aligned; aligned
// addresses cost nothing extra). PF: anything with step(), called once per k step.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "epilogue_avx2.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx2 {

constexpr int kMR = 6, kNR = 16;

struct NoPrefetch {
  __attribute__((always_inline)) void step() {}
};

template <int R, int V, class PF>
FASTGAN_AVX2_INLINE void f32_steps(__m256 (&c)[R][V], int64_t kc, const float* a, const float* b, int64_t ld,
                                   PF& pf) {
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += ld) {
    __m256 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm256_loadu_ps(b + 8 * v);
    pf.step();
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) c[r][v] = _mm256_fmadd_ps(ar, bv[v], c[r][v]);
    }
  }
}

}  // namespace avx2
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

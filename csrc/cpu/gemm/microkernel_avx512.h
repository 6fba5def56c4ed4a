// AVX-512 micro-kernels: one MR x NR = 8 x 48 tile of C in 24 zmm accumulators.
//
// Why 8 x 48: Zen 4 and Intel cores retire one (Zen 4: double-pumped) or two 512-bit FMAs
// per cycle with a 4-cycle latency, so >= 8-16 independent accumulators hide latency;
// 24 accumulators + 3 B vectors + 1 broadcast use 28 of the 32 zmm registers. Per k a
// step does 3 aligned B loads and 8 broadcasts for 24 FMAs, well under the two loads per
// cycle the cores sustain. MR = 8 divides the GAN batch sizes (64, 1024) with no ragged
// tile, and NR = 48 keeps a B micro-panel of 256 k at 48 KiB (L1 + L2 resident).
//
//   mk_f32<R, V>   fp32 panels (PanelF32), vfmadd231ps with an embedded broadcast of A
//   mk_bf16<R, V>  bf16 pair panels (PairsBF16), vdpbf16ps: each instruction multiplies a
//                  broadcast pair (A[m,k], A[m,k+1]) by 16 columns' pairs and adds both
//                  products to the fp32 accumulator, twice the fp32 FMA rate
//
// R (1..8 rows) and V (1..3 vectors of 16 columns) are compile-time so ragged edge tiles
// compute only what they store; kernel_f32 / kernel_bf16 pick the instance.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "epilogue_avx512.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx512 {

constexpr int kMR = 8, kNR = 48;

#define FASTGAN_AVX512_BF16_FEATURES FASTGAN_AVX512_FEATURES ",avx512bf16"

typedef uint32_t __attribute__((may_alias)) u32_alias;

// Walks TileOut's prefetch list, spread evenly over the kernel's k steps (bunching them
// fills the miss buffers and stalls the FMAs); a predictable branch when there is none.
struct PrefetchWalk {
  const char* row;
  int64_t stride;
  int lpr, col, count, every, wait;
  PrefetchWalk(const TileOut& o, int64_t steps)
      : row(o.pf_row), stride(o.pf_stride), lpr(o.pf_lpr), col(o.pf_col), count(o.pf_count),
        every(o.pf_count > 0 ? static_cast<int>(steps / (2 * o.pf_count)) : 1), wait(0) {
    if (every < 1) every = 1;
  }
  __attribute__((always_inline)) void step() {
    if (count <= 0 || --wait > 0) return;
    wait = every;
    _mm_prefetch(row + 64 * col, _MM_HINT_T1);
    --count;
    if (++col == lpr) col = 0, row += stride;
  }
};

// The k loops of the two micro-kernels, on their own so that other drivers can run them
// over several (A, B) segments into the same accumulators before one epilogue (the
// block-sparse kernels walk the kept blocks this way). BS is B's row stride in elements
// (fp32 values, or bf16 k-pairs); the dense micro-kernels use kNR. PF: anything with
// step(), called once per k step (PrefetchWalk, or a block-sparse walker).
template <int R, int V, int BS = kNR, class PF>
FASTGAN_AVX512_INLINE void f32_steps(__m512 (&c)[R][V], int64_t kc, const float* a, const float* b, PF& pf) {
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = _mm512_load_ps(b + 16 * v);
    pf.step();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) c[r][v] = _mm512_fmadd_ps(ar, bv[v], c[r][v]);
    }
    a += kMR;
    b += BS;
  }
}

// kp k-pairs of bf16 panels (A: kMR words per pair, B: BS words per pair).
template <int R, int V, int BS = kNR, class PF>
static inline __attribute__((always_inline, target(FASTGAN_AVX512_BF16_FEATURES))) void bf16_steps(
    __m512 (&c)[R][V], int64_t kp, const uint16_t* a, const uint16_t* b, PF& pf) {
  const u32_alias* aw = reinterpret_cast<const u32_alias*>(a);
#pragma GCC unroll 2
  for (int64_t i = 0; i < kp; ++i) {
    __m512bh bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = (__m512bh)_mm512_load_si512(b + 32 * v);
    pf.step();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(static_cast<int>(aw[r]));
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) c[r][v] = _mm512_dpbf16_ps(c[r][v], ar, bv[v]);
    }
    aw += kMR;
    b += 2 * BS;
  }
}

template <int R, int V>
static FASTGAN_AVX512_TARGET void mk_f32(int64_t kc, const float* a, const float* b, const TileOut& o) {
  __m512 c[R][V];
  const __mmask16 tail = lanes_mask(o.cols - 16 * (V - 1));
  PrefetchWalk pf(o, kc);
  if (o.first) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_ps();
  } else {
    tile_load_acc<R, V>(c, o, tail);
  }
  f32_steps<R, V>(c, kc, a, b, pf);
  tile_epilogue<R, V>(c, o, tail);
}

template <int R, int V>
static __attribute__((target(FASTGAN_AVX512_BF16_FEATURES))) void mk_bf16(int64_t kcp, const uint16_t* a,
                                                                          const uint16_t* b, const TileOut& o) {
  __m512 c[R][V];
  const __mmask16 tail = lanes_mask(o.cols - 16 * (V - 1));
  PrefetchWalk pf(o, kcp / 2);
  if (o.first) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) c[r][v] = _mm512_setzero_ps();
  } else {
    tile_load_acc<R, V>(c, o, tail);
  }
  bf16_steps<R, V>(c, kcp / 2, a, b, pf);
  tile_epilogue<R, V>(c, o, tail);
}

using KernelF32 = void (*)(int64_t, const float*, const float*, const TileOut&);
using KernelBF16 = void (*)(int64_t, const uint16_t*, const uint16_t*, const TileOut&);

#define FASTGAN_MK_ROW(fn, r) {&fn<r, 1>, &fn<r, 2>, &fn<r, 3>}
#define FASTGAN_MK_TABLE(fn)                                                                              \
  {FASTGAN_MK_ROW(fn, 1), FASTGAN_MK_ROW(fn, 2), FASTGAN_MK_ROW(fn, 3), FASTGAN_MK_ROW(fn, 4),           \
   FASTGAN_MK_ROW(fn, 5), FASTGAN_MK_ROW(fn, 6), FASTGAN_MK_ROW(fn, 7), FASTGAN_MK_ROW(fn, 8)}

// The instance for a rows x cols tile (rows 1..8, cols 1..48).
static inline KernelF32 kernel_f32(int rows, int cols) {
  static const KernelF32 table[kMR][kNR / 16] = FASTGAN_MK_TABLE(mk_f32);
  return table[rows - 1][(cols + 15) / 16 - 1];
}
static inline KernelBF16 kernel_bf16(int rows, int cols) {
  static const KernelBF16 table[kMR][kNR / 16] = FASTGAN_MK_TABLE(mk_bf16);
  return table[rows - 1][(cols + 15) / 16 - 1];
}

#undef FASTGAN_MK_TABLE
#undef FASTGAN_MK_ROW

}  // namespace avx512
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

// The AVX2 + FMA tile epilogue shared by the AVX2 micro-kernels (the dense 6 x 16 GEMM
// kernel, gemm_avx2_f32.cpp; the block-sparse tiles, bsr/tile_avx2.h), over the 8-lane
// loads and stores of io_avx2.h (first_lanes, load8, store8, re-exported here):
//
//   tile_epilogue<R,V> an R x (8 V) tile of ymm accumulators: store fp32 partial sums, or
//                      add bias, apply the activation and store in C's dtype, all while
//                      the tile is still in registers (activation switch hoisted out)
//
// The AVX2 counterpart of epilogue_avx512.h; every function is static with the AVX2
// target attribute (see activation.h).
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "../activation.h"
#include "io_avx2.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx2 {
using namespace ::fastgan::cpu::avx2;
using namespace avx2_io;  // first_lanes, load8, store8 (io_avx2.h)

// Valid lanes of vector v of a tile `cols` wide (0..8).
FASTGAN_AVX2_INLINE int vec_lanes(int cols, int v) {
  const int n = cols - 8 * v;
  return n < 0 ? 0 : n < 8 ? n : 8;
}

// Zero (TileOut::first), or the fp32 partial sums of an earlier k block.
template <int R, int V>
FASTGAN_AVX2_INLINE void tile_start(__m256 (&c)[R][V], const TileOut& o) {
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v)
      c[r][v] = (o.first || r >= o.rows)
                    ? _mm256_setzero_ps()
                    : _mm256_maskload_ps(o.acc + r * o.ld_acc + 8 * v, first_lanes(vec_lanes(o.cols, v)));
}

template <int ACT, int R, int V>
FASTGAN_AVX2_INLINE void tile_finish(__m256 (&c)[R][V], const TileOut& o) {
  const __m256 slope = _mm256_set1_ps(o.slope);
  const int64_t esz = dtype_size(o.dtype);
#pragma GCC unroll 4
  for (int v = 0; v < V; ++v) {
    const int n = vec_lanes(o.cols, v);
    const __m256 b = o.bias ? _mm256_maskload_ps(o.bias + 8 * v, first_lanes(n)) : _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
      const __m256 z = act_ps<ACT>(_mm256_add_ps(c[r][v], b), slope);
      store8(static_cast<char*>(o.out) + (r * o.ldc + 8 * v) * esz, o.dtype, z, n);
    }
  }
}

// The end of every AVX2 micro-kernel: fp32 partial sums, or the fused epilogue.
template <int R, int V>
FASTGAN_AVX2_INLINE void tile_epilogue(__m256 (&c)[R][V], const TileOut& o) {
  if (!o.last) {  // (fully unrolled loops keep c[][] in registers)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v)
        store8(reinterpret_cast<char*>(o.acc + r * o.ld_acc + 8 * v), DType::kF32, c[r][v], vec_lanes(o.cols, v));
    }
    return;
  }
  cpu::avx2::dispatch_activation(
      o.act, [&](auto a) FASTGAN_AVX2_INLINE_LAMBDA { tile_finish<decltype(a)::value, R, V>(c, o); });
}

}  // namespace avx2
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

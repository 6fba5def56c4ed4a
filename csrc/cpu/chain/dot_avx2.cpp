// Dense fp32 chain layers at small batch on CPUs below AVX-512 (AVX2 + FMA): each weight row
// W[n, :] is read once, in place, for all (at most kMaxRows) rows of the input. The GEMM core's
// AVX2 path packs the whole weight on every call, which at batch 1-8 costs more than the
// products; its AVX-512 path has its own in-place dot products (gemm/dot_avx512.h), so this
// one only runs where that path does not (layer.cpp decides).
#include <algorithm>
#include <cstdint>

#include "../activation.h"
#include "../gemm/gemm.h"
#include "../gemm/tile.h"
#include "chain.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace fastgan {
namespace cpu {
namespace chain {
namespace {

#define FASTGAN_AVX2_DOT __attribute__((target("avx2,fma")))

FASTGAN_AVX2_DOT inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// out[r] = x[r, :] . w for R rows: two accumulators per row hide the FMA latency while they fit
// the 16 ymm registers (R <= 4), one per row beyond.
template <int R>
FASTGAN_AVX2_DOT void dots(const float* x, int64_t xrs, const float* w, int64_t K, float* out) {
  constexpr int A = R <= 4 ? 2 : 1;
  __m256 acc[R][A];
  for (int r = 0; r < R; ++r)
    for (int a = 0; a < A; ++a) acc[r][a] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 * A <= K; k += 8 * A) {
    for (int a = 0; a < A; ++a) {
      const __m256 wv = _mm256_loadu_ps(w + k + 8 * a);
      for (int r = 0; r < R; ++r) acc[r][a] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * xrs + k + 8 * a), wv, acc[r][a]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m256 v = acc[r][0];
    for (int a = 1; a < A; ++a) v = _mm256_add_ps(v, acc[r][a]);
    float s = hsum(v);
    for (int64_t j = k; j < K; ++j) s += x[r * xrs + j] * w[j];
    out[r] = s;
  }
}

template <int R>
FASTGAN_AVX2_DOT void rows_slice(const Layer& L, const Act& in, const Out& out, int64_t n0, int64_t n1) {
  const float* x = static_cast<const float*>(in.data);
  const float* W = static_cast<const float*>(L.weight);
  const gemm::DType odt = out.kind == Store::kBF16 ? gemm::DType::kBF16 : gemm::DType::kF32;
  const int osz = store_size(out.kind);
  float s[R];
  for (int64_t n = n0; n < n1; ++n) {
    dots<R>(x, in.rs, W + n * L.K, L.K, s);
    const float b = L.bias ? L.bias[n] : 0.f;
    for (int r = 0; r < R; ++r)
      gemm::store_scalar(static_cast<char*>(out.data) + (r * out.ld + n) * osz, odt, act_ref(L.act, s[r] + b, L.slope));
  }
}

}  // namespace

bool small_batch_dense_applies(const Layer& L, const Act& in, const Out& out, int64_t rows) {
  return L.format == Format::kDenseF32 && rows <= kSmallBatchRows && in.kind == Store::kF32 && in.cs == 1 &&
         out.kind != Store::kI8;
}

void small_batch_dense(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  switch (rows) {
    case 1: return rows_slice<1>(L, in, out, n0, n1);
    case 2: return rows_slice<2>(L, in, out, n0, n1);
    case 3: return rows_slice<3>(L, in, out, n0, n1);
    case 4: return rows_slice<4>(L, in, out, n0, n1);
    case 5: return rows_slice<5>(L, in, out, n0, n1);
    case 6: return rows_slice<6>(L, in, out, n0, n1);
    case 7: return rows_slice<7>(L, in, out, n0, n1);
    default: return rows_slice<8>(L, in, out, n0, n1);
  }
}

}  // namespace chain
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: layer.cpp never calls these (small_batch_dense_applies is false)
namespace fastgan { namespace cpu { namespace chain {
bool small_batch_dense_applies(const Layer&, const Act&, const Out&, int64_t) { return false; }
void small_batch_dense(const Layer&, const Act&, const Out&, int64_t, int64_t, int64_t) {}
}}}
#endif

// fp32 GEMM below AVX-512: the product through ATen's own GEMM (at::mm_out: MKL / oneDNN
// sgemm, the one eager F.linear uses), then OUR epilogue (bias + activation) in one
// parallel pass over C while it is still in cache. On AVX2 machines the vendor sgemm
// beats our 6x16 micro-kernel (gemm_avx2_f32.cpp), and a fused kernel must never be
// slower than the eager code it replaces; the fusion we keep is the epilogue (one pass,
// no separate bias/activation tensors) and, for the backward GEMMs, the prologue
// A * act'(Y), materialised once into a scratch buffer before the GEMM.
// Only fp32 A, B, Y and C come here (gemm_dispatch.cpp routes everything else elsewhere).
#include "gemm/gemm.h"

#include <ATen/ATen.h>

#include "parallel.h"
#include "activation.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

at::Tensor view(const void* data, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  return at::from_blob(const_cast<void*>(data), {rows, cols}, {rs, cs}, at::TensorOptions().dtype(at::kFloat));
}

// Rows per parallel task so that a task touches ~32K elements.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

#if defined(__x86_64__)
using namespace ::fastgan::cpu::avx2;

FASTGAN_AVX2_INLINE __m256i first_lanes(int64_t n) {  // all-ones in the first n (0..8) lanes
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// c[0, n) = act(c + bias) in place (bias may be null).
template <int A>
__attribute__((target(FASTGAN_AVX2_FEATURES))) void epilogue_row(float* c, const float* bias, int64_t n_cols,
                                                                  float slope) {
  const __m256 s = _mm256_set1_ps(slope);
  int64_t n = 0;
  for (; n + 8 <= n_cols; n += 8) {
    __m256 z = _mm256_loadu_ps(c + n);
    if (bias) z = _mm256_add_ps(z, _mm256_loadu_ps(bias + n));
    _mm256_storeu_ps(c + n, act_ps<A>(z, s));
  }
  if (n < n_cols) {
    const __m256i m = first_lanes(n_cols - n);
    __m256 z = _mm256_maskload_ps(c + n, m);
    if (bias) z = _mm256_add_ps(z, _mm256_maskload_ps(bias + n, m));
    _mm256_maskstore_ps(c + n, m, act_ps<A>(z, s));
  }
}

// out[0, K) = a[k] * act'(y[k]) for unit-stride rows.
template <int A>
__attribute__((target(FASTGAN_AVX2_FEATURES))) void prologue_row(float* out, const float* a, const float* y,
                                                                  int64_t K, float slope) {
  const __m256 s = _mm256_set1_ps(slope);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8)
    _mm256_storeu_ps(out + k, grad_from_output_ps<A>(_mm256_loadu_ps(a + k), _mm256_loadu_ps(y + k), s));
  for (; k < K; ++k) out[k] = grad_from_output_scalar<A>(a[k], y[k], slope);
}
#else
template <int A>
void epilogue_row(float* c, const float* bias, int64_t n_cols, float slope) {
  for (int64_t n = 0; n < n_cols; ++n) c[n] = act_scalar<A>(c[n] + (bias ? bias[n] : 0.f), slope);
}
template <int A>
void prologue_row(float* out, const float* a, const float* y, int64_t K, float slope) {
  for (int64_t k = 0; k < K; ++k) out[k] = grad_from_output_scalar<A>(a[k], y[k], slope);
}
#endif

// A * act'(Y) as a contiguous [M, K] fp32 tensor, one parallel pass.
at::Tensor materialise_prologue(const Problem& p) {
  at::Tensor out = at::empty({p.M, p.K}, at::TensorOptions().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  const float* a = static_cast<const float*>(p.a.data);
  const float* y = static_cast<const float*>(p.y.data);
  const bool unit = p.a.cs == 1 && p.y.cs == 1;
  ::fastgan::cpu::dispatch_activation(p.dact, [&](auto act) {
    constexpr int A = decltype(act)::value;
    parallel_for(0, p.M, row_grain(p.K), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const float* ar = a + m * p.a.rs;
        const float* yr = y + m * p.y.rs;
        if (unit) {
          prologue_row<A>(o + m * p.K, ar, yr, p.K, p.dact_slope);
        } else {
          for (int64_t k = 0; k < p.K; ++k)
            o[m * p.K + k] = grad_from_output_scalar<A>(ar[k * p.a.cs], yr[k * p.y.cs], p.dact_slope);
        }
      }
    });
    return 0;
  });
  return out;
}

}  // namespace

void run_blas_f32(const Problem& p) {
  TORCH_CHECK(p.a.dtype == DType::kF32 && p.b.dtype == DType::kF32 && p.c_dtype == DType::kF32 &&
                  (p.dact == kIdentity || p.y.dtype == DType::kF32),
              "gemm::run_blas_f32: fp32 operands only");
  const at::Tensor a = p.dact != kIdentity ? materialise_prologue(p) : view(p.a.data, p.M, p.K, p.a.rs, p.a.cs);
  const at::Tensor b = view(p.b.data, p.K, p.N, p.b.rs, p.b.cs);
  at::Tensor c = view(p.c, p.M, p.N, p.ldc, 1);
  at::mm_out(c, a, b);
  if (p.act == kIdentity && !p.bias) return;
  float* cp = static_cast<float*>(p.c);
  ::fastgan::cpu::dispatch_activation(p.act, [&](auto act) {
    constexpr int A = decltype(act)::value;
    parallel_for(0, p.M, row_grain(p.N), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) epilogue_row<A>(cp + m * p.ldc, p.bias, p.N, p.slope);
    });
    return 0;
  });
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

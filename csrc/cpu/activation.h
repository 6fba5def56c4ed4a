// Activations fused into the CPU kernels' epilogues, and their derivatives expressed
// through the saved output y = act(z) (the backward GEMMs' prologue).
//
// Codes as in fastgan_kernels/activations.py: 0 identity, 1 relu, 2 leaky_relu(slope),
// 3 tanh, 4 sigmoid. `negative_slope` >= 0 is guaranteed by the Python layer, so
// sign(y) == sign(z) and the derivatives below are exact.
//
// Two flavours, with the same semantics (NaN in -> NaN out, like torch):
//   * scalar references (`act_ref`, `grad_from_output_ref`), used by the portable kernels
//     and for tails, and as the definition the vector versions are tested against;
//   * AVX-512 vectors of 16 floats (namespace avx512) and AVX2 + FMA vectors of 8 (namespace
//     avx2), x86-64 only. Every function
//     carries its own target attribute, so this header can be included anywhere; call
//     them from code compiled for AVX-512 (a `#pragma GCC target` region that includes
//     FASTGAN_AVX512_TARGET's features) so that they inline. They are `static`, so no
//     copy compiled for a wider target can leak into a narrower translation unit.
//
// Accuracy of the vector versions (fp32): exp ~2 ulp, tanh and sigmoid ~1e-7 relative
// (tanh uses a series below |z| < 0.5 to avoid the cancellation of 1 - 2/(e^2z + 1)).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastgan {
namespace cpu {

enum Activation : int { kIdentity = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4 };

// ---- the one dispatch from a runtime code to a compile-time activation ------------------
// Every kernel that hoists the activation out of its loops calls
//   dispatch_activation(act, [&](auto a) { return kernel<decltype(a)::value>(...); });
// `a` is a std::integral_constant<int, code>. Adding an activation = one enum value above,
// one entry in this list, and its formulas (scalar, avx512, avx2) below.
#define FASTGAN_FOR_EACH_ACTIVATION(X) X(kRelu) X(kLeakyRelu) X(kTanh) X(kSigmoid)

#define FASTGAN_ACTIVATION_CASE_(code) \
  case code:                           \
    return f(std::integral_constant<int, code>{});
// Defined once per ISA attribute set: GCC inlines an always_inline AVX-512 lambda only into
// a caller compiled for (a superset of) its target, so the AVX-512 and AVX2 kernels get a
// dispatcher carrying their own target (namespaces avx512 / avx2 below) and the whole
// chain -- dispatcher, lambda, tile code -- inlines with the accumulators in registers.
// Unknown codes run the identity (the Python layer has already refused them).
#define FASTGAN_DEFINE_ACTIVATION_DISPATCH(ATTRS)                   \
  template <class F>                                                \
  ATTRS decltype(auto) dispatch_activation(int act, F&& f) {        \
    switch (act) {                                                  \
      FASTGAN_FOR_EACH_ACTIVATION(FASTGAN_ACTIVATION_CASE_)         \
      default: return f(std::integral_constant<int, kIdentity>{}); \
    }                                                               \
  }

// Portable code (and callers of out-of-line ISA kernels: the lambda then only makes a call).
FASTGAN_DEFINE_ACTIVATION_DISPATCH(static inline)

// ---- scalar references ------------------------------------------------------------

template <int ACT>
static inline float act_scalar(float z, float slope) {
  if constexpr (ACT == kRelu) {
    return z > 0.f ? z : (z != z ? z : 0.f);
  } else if constexpr (ACT == kLeakyRelu) {
    return z > 0.f ? z : z * slope;
  } else if constexpr (ACT == kTanh) {
    return std::tanh(z);
  } else if constexpr (ACT == kSigmoid) {
    return 1.f / (1.f + std::exp(-z));
  } else {
    (void)slope;
    return z;
  }
}

// grad_out * act'(z), written with y = act(z); same formulas as
// activations.grad_from_output (relu: where(y > 0, g, 0), so a NaN y gives 0).
template <int ACT>
static inline float grad_from_output_scalar(float g, float y, float slope) {
  if constexpr (ACT == kRelu) {
    return y > 0.f ? g : 0.f;
  } else if constexpr (ACT == kLeakyRelu) {
    return y > 0.f ? g : g * slope;
  } else if constexpr (ACT == kTanh) {
    return g * (1.f - y * y);
  } else if constexpr (ACT == kSigmoid) {
    return g * (y * (1.f - y));
  } else {
    (void)y, (void)slope;
    return g;
  }
}

// Runtime-code versions (portable kernels, tails, per-element code outside hot loops).
static inline float act_ref(int act, float z, float slope) {
  return dispatch_activation(act, [&](auto a) { return act_scalar<decltype(a)::value>(z, slope); });
}

static inline float grad_from_output_ref(int act, float g, float y, float slope) {
  return dispatch_activation(act, [&](auto a) { return grad_from_output_scalar<decltype(a)::value>(g, y, slope); });
}

#if defined(__x86_64__)
// The feature set every AVX-512 kernel of the extension is compiled for (Skylake-X and
// later, Zen 4). Files that call into avx512:: use this same set (or a superset) in
// their `#pragma GCC target`.
#define FASTGAN_AVX512_FEATURES "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,bmi2"
#define FASTGAN_AVX512_TARGET __attribute__((target(FASTGAN_AVX512_FEATURES)))
#define FASTGAN_AVX512_INLINE static inline __attribute__((always_inline, target(FASTGAN_AVX512_FEATURES)))
// For lambdas handed to avx512::dispatch_activation: `[&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { ... }`.
#define FASTGAN_AVX512_INLINE_LAMBDA __attribute__((always_inline, target(FASTGAN_AVX512_FEATURES)))

namespace avx512 {

// e^x. Range reduction x = n ln2 + r, |r| <= ln2/2, degree-7 Taylor polynomial for e^r
// (truncation < 6e-9 relative), and vscalefps for the 2^n factor, which saturates to
// 0 / inf without integer overflow. NaN propagates (vmaxps/vminps return their second
// operand when either is NaN, and x is that operand).
FASTGAN_AVX512_INLINE __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.f), x);
  x = _mm512_min_ps(_mm512_set1_ps(88.8f), x);
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);  // ln2 high part
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);     // ln2 low part
  __m512 p = _mm512_set1_ps(1.f / 5040.f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

// tanh: odd Taylor series through z^15 for |z| < 0.5 (truncation < 1e-8), else
// sign(z) * (1 - 2 / (e^{2|z|} + 1)).
FASTGAN_AVX512_INLINE __m512 tanh_ps(__m512 z) {
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x80000000));
  const __m512 a = _mm512_andnot_ps(sign_mask, z);
  const __m512 e = exp_ps(_mm512_add_ps(a, a));
  __m512 big = _mm512_sub_ps(_mm512_set1_ps(1.f),
                             _mm512_div_ps(_mm512_set1_ps(2.f), _mm512_add_ps(e, _mm512_set1_ps(1.f))));
  big = _mm512_or_ps(big, _mm512_and_ps(z, sign_mask));
  const __m512 z2 = _mm512_mul_ps(z, z);
  __m512 p = _mm512_set1_ps(-929569.f / 638512875.f);
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(21844.f / 6081075.f));
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(-1382.f / 155925.f));
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(62.f / 2835.f));
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(-17.f / 315.f));
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(2.f / 15.f));
  p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(-1.f / 3.f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z2), z, z);
  const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(is_small, big, small);
}

FASTGAN_AVX512_INLINE __m512 sigmoid_ps(__m512 z) {
  const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), z));
  return _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_add_ps(_mm512_set1_ps(1.f), e));
}

// act(z) for a compile-time activation (the epilogues hoist the switch out of their tiles).
template <int ACT>
FASTGAN_AVX512_INLINE __m512 act_ps(__m512 z, __m512 slope) {
  if constexpr (ACT == kRelu) {
    return _mm512_max_ps(_mm512_setzero_ps(), z);  // second operand wins on NaN
  } else if constexpr (ACT == kLeakyRelu) {
    const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(z, slope), z);
  } else if constexpr (ACT == kTanh) {
    return tanh_ps(z);
  } else if constexpr (ACT == kSigmoid) {
    return sigmoid_ps(z);
  } else {
    (void)slope;
    return z;
  }
}

// grad_out * act'(z) from y = act(z), for a compile-time activation.
template <int ACT>
FASTGAN_AVX512_INLINE __m512 grad_from_output_ps(__m512 g, __m512 y, __m512 slope) {
  if constexpr (ACT == kRelu) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g);
  } else if constexpr (ACT == kLeakyRelu) {
    const __mmask16 pos = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(g, slope), g);
  } else if constexpr (ACT == kTanh) {
    return _mm512_mul_ps(g, _mm512_fnmadd_ps(y, y, _mm512_set1_ps(1.f)));
  } else if constexpr (ACT == kSigmoid) {
    return _mm512_mul_ps(g, _mm512_mul_ps(y, _mm512_sub_ps(_mm512_set1_ps(1.f), y)));
  } else {
    (void)y, (void)slope;
    return g;
  }
}

FASTGAN_DEFINE_ACTIVATION_DISPATCH(FASTGAN_AVX512_INLINE)

// Runtime-code versions, for code outside the hot loops.
FASTGAN_AVX512_INLINE __m512 act_ps(int act, __m512 z, __m512 slope) {
  return dispatch_activation(act, [&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { return act_ps<decltype(a)::value>(z, slope); });
}

FASTGAN_AVX512_INLINE __m512 grad_from_output_ps(int act, __m512 g, __m512 y, __m512 slope) {
  return dispatch_activation(
      act, [&](auto a) FASTGAN_AVX512_INLINE_LAMBDA { return grad_from_output_ps<decltype(a)::value>(g, y, slope); });
}

}  // namespace avx512

// ---- AVX2 + FMA: 8 floats ----------------------------------------------------------------
#define FASTGAN_AVX2_FEATURES "avx2,fma,f16c,bmi2"
#define FASTGAN_AVX2_TARGET __attribute__((target(FASTGAN_AVX2_FEATURES)))
#define FASTGAN_AVX2_INLINE static inline __attribute__((always_inline, target(FASTGAN_AVX2_FEATURES)))
#define FASTGAN_AVX2_INLINE_LAMBDA __attribute__((always_inline, target(FASTGAN_AVX2_FEATURES)))

namespace avx2 {

// e^x as avx512::exp_ps, with 2^n built in the exponent bits: x is clamped to
// [-87.3, 88.7] so n stays in the normal range (e^x below 1e-38 comes out as ~1e-38).
FASTGAN_AVX2_INLINE __m256 exp_ps(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.3f), x);  // NaN: vmaxps returns its second operand
  x = _mm256_min_ps(_mm256_set1_ps(88.7f), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040.f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

FASTGAN_AVX2_INLINE __m256 tanh_ps(__m256 z) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 a = _mm256_andnot_ps(sign_mask, z);
  const __m256 e = exp_ps(_mm256_add_ps(a, a));
  __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.f),
                             _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(e, _mm256_set1_ps(1.f))));
  big = _mm256_or_ps(big, _mm256_and_ps(z, sign_mask));
  const __m256 z2 = _mm256_mul_ps(z, z);
  __m256 p = _mm256_set1_ps(-929569.f / 638512875.f);
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(21844.f / 6081075.f));
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(-1382.f / 155925.f));
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(62.f / 2835.f));
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(-17.f / 315.f));
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.f / 15.f));
  p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(-1.f / 3.f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z2), z, z);
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

FASTGAN_AVX2_INLINE __m256 sigmoid_ps(__m256 z) {
  const __m256 e = exp_ps(_mm256_sub_ps(_mm256_setzero_ps(), z));
  return _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_add_ps(_mm256_set1_ps(1.f), e));
}

template <int ACT>
FASTGAN_AVX2_INLINE __m256 act_ps(__m256 z, __m256 slope) {
  if constexpr (ACT == kRelu) {
    return _mm256_max_ps(_mm256_setzero_ps(), z);
  } else if constexpr (ACT == kLeakyRelu) {
    return _mm256_blendv_ps(_mm256_mul_ps(z, slope), z, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ));
  } else if constexpr (ACT == kTanh) {
    return tanh_ps(z);
  } else if constexpr (ACT == kSigmoid) {
    return sigmoid_ps(z);
  } else {
    (void)slope;
    return z;
  }
}

template <int ACT>
FASTGAN_AVX2_INLINE __m256 grad_from_output_ps(__m256 g, __m256 y, __m256 slope) {
  if constexpr (ACT == kRelu) {
    return _mm256_and_ps(_mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ), g);
  } else if constexpr (ACT == kLeakyRelu) {
    return _mm256_blendv_ps(_mm256_mul_ps(g, slope), g, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
  } else if constexpr (ACT == kTanh) {
    return _mm256_mul_ps(g, _mm256_fnmadd_ps(y, y, _mm256_set1_ps(1.f)));
  } else if constexpr (ACT == kSigmoid) {
    return _mm256_mul_ps(g, _mm256_mul_ps(y, _mm256_sub_ps(_mm256_set1_ps(1.f), y)));
  } else {
    (void)y, (void)slope;
    return g;
  }
}

FASTGAN_DEFINE_ACTIVATION_DISPATCH(FASTGAN_AVX2_INLINE)

FASTGAN_AVX2_INLINE __m256 grad_from_output_ps(int act, __m256 g, __m256 y, __m256 slope) {
  return dispatch_activation(
      act, [&](auto a) FASTGAN_AVX2_INLINE_LAMBDA { return grad_from_output_ps<decltype(a)::value>(g, y, slope); });
}

}  // namespace avx2
#endif  // __x86_64__

}  // namespace cpu
}  // namespace fastgan

// Activations fused into the CPU kernels' epilogues, and their derivatives applied by the
// backward GEMMs' prologue.
//
// Codes as in fastgan_kernels/activations.py: 0 identity, 1 relu, 2 leaky_relu(slope),
// 3 tanh, 4 sigmoid, 5 gelu (erf), 6 gelu_tanh, 7 silu, 8 elu(alpha). `slope` is the
// activation's one parameter: leaky_relu's slope or elu's alpha, both >= 0 (checked by the
// Python layer).
//
// The derivative (`grad_from_output*`) reads one saved tensor s: the output y = act(z) for
// codes 0-4 and 8 (sign(y) == sign(z) since slope, alpha >= 0, so y determines act'(z):
// elu' = y + alpha for y <= 0), and the pre-activation z itself for gelu, gelu_tanh and silu,
// which are not functions of y (saves_preactivation(); docs/design.md says how z is kept).
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
// erf: odd Taylor series below |x| < 0.5, above it Abramowitz & Stegun 7.1.26
// (|error| <= 1.5e-7 absolute); expm1 (elu): series below |x| < 0.5, e^x - 1 above.
// Measured against torch in fp64 over z in [-10, 10] (tests/test_cpu_activations.py prints
// them): see docs/design.md, "More activations".
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastgan {
namespace cpu {

enum Activation : int {
  kIdentity = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4, kGelu = 5, kGeluTanh = 6, kSilu = 7, kElu = 8
};
constexpr int kNumActivations = 9;  // codes 0 .. kNumActivations - 1 are valid

// True when the backward reads the pre-activation z instead of the output y.
static inline bool saves_preactivation(int act) { return act == kGelu || act == kGeluTanh || act == kSilu; }

// ---- the one dispatch from a runtime code to a compile-time activation ------------------
// Every kernel that hoists the activation out of its loops calls
//   dispatch_activation(act, [&](auto a) { return kernel<decltype(a)::value>(...); });
// `a` is a std::integral_constant<int, code>. Adding an activation = one enum value above,
// one entry in this list, and its formulas (scalar, avx512, avx2) below.
#define FASTGAN_FOR_EACH_ACTIVATION(X) \
  X(kRelu) X(kLeakyRelu) X(kTanh) X(kSigmoid) X(kGelu) X(kGeluTanh) X(kSilu) X(kElu)

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

constexpr float kSqrtHalf = 0.70710678118654752f;     // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;               // gelu_tanh: tanh(sqrt(2/pi) (z + 0.044715 z^3))

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
  } else if constexpr (ACT == kGelu) {
    return 0.5f * z * (1.f + std::erf(z * kSqrtHalf));
  } else if constexpr (ACT == kGeluTanh) {
    return 0.5f * z * (1.f + std::tanh(kSqrt2OverPi * (z + kGeluCubic * z * z * z)));
  } else if constexpr (ACT == kSilu) {
    return z / (1.f + std::exp(-z));
  } else if constexpr (ACT == kElu) {
    return z > 0.f ? z : slope * std::expm1(z);
  } else {
    (void)slope;
    return z;
  }
}

// grad_out * act'(z) from the saved s (y, or z for gelu / gelu_tanh / silu); same formulas as
// activations.grad_from_saved (relu: where(y > 0, g, 0), so a NaN y gives 0).
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
  } else if constexpr (ACT == kGelu) {  // y is z: Phi(z) + z phi(z)
    return g * (0.5f * (1.f + std::erf(y * kSqrtHalf)) + y * std::exp(-0.5f * y * y) * kInvSqrt2Pi);
  } else if constexpr (ACT == kGeluTanh) {  // y is z
    const float t = std::tanh(kSqrt2OverPi * (y + kGeluCubic * y * y * y));
    return g * (0.5f * (1.f + t) + 0.5f * y * (1.f - t * t) * kSqrt2OverPi * (1.f + 3.f * kGeluCubic * y * y));
  } else if constexpr (ACT == kSilu) {  // y is z: s (1 + z (1 - s))
    const float s = 1.f / (1.f + std::exp(-y));
    return g * (s * (1.f + y * (1.f - s)));
  } else if constexpr (ACT == kElu) {  // y <= 0: alpha e^z = y + alpha
    return y > 0.f ? g : g * (y + slope);
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

// erf: for |x| < 0.5 the odd Taylor series through x^13 (truncation < 2e-9 relative there,
// where the next form would lose relative accuracy); above, Abramowitz & Stegun 7.1.26:
// 1 - t (a1 + t (a2 + ... a5)) e^{-x^2}, t = 1 / (1 + p |x|), |error| <= 1.5e-7, with the sign
// of x copied back. NaN propagates through both forms.
FASTGAN_AVX512_INLINE __m512 erf_ps(__m512 x) {
  const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x80000000));
  const __m512 a = _mm512_andnot_ps(sign_mask, x);
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.f), _mm512_fmadd_ps(a, _mm512_set1_ps(0.3275911f), _mm512_set1_ps(1.f)));
  __m512 p = _mm512_set1_ps(1.061405429f);
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
  p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
  const __m512 e = exp_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), a), a));
  __m512 big = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, _mm512_set1_ps(1.f));
  big = _mm512_or_ps(big, _mm512_and_ps(x, sign_mask));
  const __m512 x2 = _mm512_mul_ps(x, x);  // 2/sqrt(pi) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320 + x^13/9360)
  __m512 q = _mm512_set1_ps(1.f / 9360.f);
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.f / 1320.f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(1.f / 216.f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.f / 42.f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(1.f / 10.f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(-1.f / 3.f));
  q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(1.f));
  const __m512 small = _mm512_mul_ps(_mm512_mul_ps(q, x), _mm512_set1_ps(1.12837916709551257f));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ), big, small);
}

// e^x - 1 without the cancellation near 0: Taylor series through x^8 for |x| < 0.5
// (truncation < 6e-9 relative), e^x - 1 above.
FASTGAN_AVX512_INLINE __m512 expm1_ps(__m512 x) {
  __m512 p = _mm512_set1_ps(1.f / 40320.f);
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.f / 5040.f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.f / 720.f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.f / 120.f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.f / 24.f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(1.f / 6.f));
  p = _mm512_fmadd_ps(p, x, _mm512_set1_ps(0.5f));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, x), x, x);
  const __m512 big = _mm512_sub_ps(exp_ps(x), _mm512_set1_ps(1.f));
  const __m512 a = _mm512_andnot_ps(_mm512_castsi512_ps(_mm512_set1_epi32(0x80000000)), x);
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ), big, small);
}

FASTGAN_AVX512_INLINE __m512 gelu_tanh_inner_ps(__m512 z) {  // tanh(sqrt(2/pi) (z + 0.044715 z^3))
  const __m512 z3 = _mm512_mul_ps(_mm512_mul_ps(z, z), z);
  return tanh_ps(_mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi), _mm512_fmadd_ps(z3, _mm512_set1_ps(kGeluCubic), z)));
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
  } else if constexpr (ACT == kGelu) {
    const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), z);
    return _mm512_fmadd_ps(h, erf_ps(_mm512_mul_ps(z, _mm512_set1_ps(kSqrtHalf))), h);
  } else if constexpr (ACT == kGeluTanh) {
    const __m512 h = _mm512_mul_ps(_mm512_set1_ps(0.5f), z);
    return _mm512_fmadd_ps(h, gelu_tanh_inner_ps(z), h);
  } else if constexpr (ACT == kSilu) {
    return _mm512_mul_ps(z, sigmoid_ps(z));
  } else if constexpr (ACT == kElu) {
    const __mmask16 pos = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(slope, expm1_ps(z)), z);
  } else {
    (void)slope;
    return z;
  }
}

// grad_out * act'(z) from the saved y (z for gelu / gelu_tanh / silu), compile-time activation.
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
  } else if constexpr (ACT == kGelu) {  // y is z: 0.5 (1 + erf(z / sqrt 2)) + z e^{-z^2/2} / sqrt(2 pi)
    const __m512 cdf = _mm512_fmadd_ps(_mm512_set1_ps(0.5f), erf_ps(_mm512_mul_ps(y, _mm512_set1_ps(kSqrtHalf))),
                                       _mm512_set1_ps(0.5f));
    const __m512 pdf = _mm512_mul_ps(exp_ps(_mm512_mul_ps(_mm512_mul_ps(y, y), _mm512_set1_ps(-0.5f))),
                                     _mm512_set1_ps(kInvSqrt2Pi));
    return _mm512_mul_ps(g, _mm512_fmadd_ps(y, pdf, cdf));
  } else if constexpr (ACT == kGeluTanh) {  // y is z: 0.5 (1 + t) + 0.5 z (1 - t^2) sqrt(2/pi) (1 + 3 c z^2)
    const __m512 t = gelu_tanh_inner_ps(y), half = _mm512_set1_ps(0.5f);
    const __m512 du = _mm512_mul_ps(_mm512_set1_ps(kSqrt2OverPi),
                                    _mm512_fmadd_ps(_mm512_mul_ps(y, y), _mm512_set1_ps(3.f * kGeluCubic), _mm512_set1_ps(1.f)));
    const __m512 tail = _mm512_mul_ps(_mm512_mul_ps(half, y), _mm512_mul_ps(_mm512_fnmadd_ps(t, t, _mm512_set1_ps(1.f)), du));
    return _mm512_mul_ps(g, _mm512_add_ps(_mm512_fmadd_ps(half, t, half), tail));
  } else if constexpr (ACT == kSilu) {  // y is z: s (1 + z (1 - s))
    const __m512 s = sigmoid_ps(y), one = _mm512_set1_ps(1.f);
    return _mm512_mul_ps(g, _mm512_mul_ps(s, _mm512_fmadd_ps(y, _mm512_sub_ps(one, s), one)));
  } else if constexpr (ACT == kElu) {  // 1 where y > 0, else y + alpha
    const __mmask16 pos = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ);
    return _mm512_mask_blend_ps(pos, _mm512_mul_ps(g, _mm512_add_ps(y, slope)), g);
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

// erf and expm1 as in avx512:: (same forms and coefficients).
FASTGAN_AVX2_INLINE __m256 erf_ps(__m256 x) {
  const __m256 sign_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256 a = _mm256_andnot_ps(sign_mask, x);
  const __m256 t = _mm256_div_ps(_mm256_set1_ps(1.f), _mm256_fmadd_ps(a, _mm256_set1_ps(0.3275911f), _mm256_set1_ps(1.f)));
  __m256 p = _mm256_set1_ps(1.061405429f);
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
  p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
  const __m256 e = exp_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a));
  __m256 big = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, _mm256_set1_ps(1.f));
  big = _mm256_or_ps(big, _mm256_and_ps(x, sign_mask));
  const __m256 x2 = _mm256_mul_ps(x, x);
  __m256 q = _mm256_set1_ps(1.f / 9360.f);
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.f / 1320.f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.f / 216.f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.f / 42.f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.f / 10.f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(-1.f / 3.f));
  q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(1.f));
  const __m256 small = _mm256_mul_ps(_mm256_mul_ps(q, x), _mm256_set1_ps(1.12837916709551257f));
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

FASTGAN_AVX2_INLINE __m256 expm1_ps(__m256 x) {
  __m256 p = _mm256_set1_ps(1.f / 40320.f);
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.f / 5040.f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.f / 720.f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.f / 120.f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.f / 24.f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.f / 6.f));
  p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(0.5f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, x), x, x);
  const __m256 big = _mm256_sub_ps(exp_ps(x), _mm256_set1_ps(1.f));
  const __m256 a = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u))), x);
  return _mm256_blendv_ps(big, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
}

FASTGAN_AVX2_INLINE __m256 gelu_tanh_inner_ps(__m256 z) {
  const __m256 z3 = _mm256_mul_ps(_mm256_mul_ps(z, z), z);
  return tanh_ps(_mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi), _mm256_fmadd_ps(z3, _mm256_set1_ps(kGeluCubic), z)));
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
  } else if constexpr (ACT == kGelu) {
    const __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), z);
    return _mm256_fmadd_ps(h, erf_ps(_mm256_mul_ps(z, _mm256_set1_ps(kSqrtHalf))), h);
  } else if constexpr (ACT == kGeluTanh) {
    const __m256 h = _mm256_mul_ps(_mm256_set1_ps(0.5f), z);
    return _mm256_fmadd_ps(h, gelu_tanh_inner_ps(z), h);
  } else if constexpr (ACT == kSilu) {
    return _mm256_mul_ps(z, sigmoid_ps(z));
  } else if constexpr (ACT == kElu) {
    return _mm256_blendv_ps(_mm256_mul_ps(slope, expm1_ps(z)), z, _mm256_cmp_ps(z, _mm256_setzero_ps(), _CMP_GT_OQ));
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
  } else if constexpr (ACT == kGelu) {
    const __m256 cdf = _mm256_fmadd_ps(_mm256_set1_ps(0.5f), erf_ps(_mm256_mul_ps(y, _mm256_set1_ps(kSqrtHalf))),
                                       _mm256_set1_ps(0.5f));
    const __m256 pdf = _mm256_mul_ps(exp_ps(_mm256_mul_ps(_mm256_mul_ps(y, y), _mm256_set1_ps(-0.5f))),
                                     _mm256_set1_ps(kInvSqrt2Pi));
    return _mm256_mul_ps(g, _mm256_fmadd_ps(y, pdf, cdf));
  } else if constexpr (ACT == kGeluTanh) {
    const __m256 t = gelu_tanh_inner_ps(y), half = _mm256_set1_ps(0.5f);
    const __m256 du = _mm256_mul_ps(_mm256_set1_ps(kSqrt2OverPi),
                                    _mm256_fmadd_ps(_mm256_mul_ps(y, y), _mm256_set1_ps(3.f * kGeluCubic), _mm256_set1_ps(1.f)));
    const __m256 tail = _mm256_mul_ps(_mm256_mul_ps(half, y), _mm256_mul_ps(_mm256_fnmadd_ps(t, t, _mm256_set1_ps(1.f)), du));
    return _mm256_mul_ps(g, _mm256_add_ps(_mm256_fmadd_ps(half, t, half), tail));
  } else if constexpr (ACT == kSilu) {
    const __m256 s = sigmoid_ps(y), one = _mm256_set1_ps(1.f);
    return _mm256_mul_ps(g, _mm256_mul_ps(s, _mm256_fmadd_ps(y, _mm256_sub_ps(one, s), one)));
  } else if constexpr (ACT == kElu) {
    return _mm256_blendv_ps(_mm256_mul_ps(g, _mm256_add_ps(y, slope)), g, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
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

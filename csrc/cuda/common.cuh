// Device helpers shared by every CUDA kernel of the extension (fused, block-sparse and
// int8 linear): number types, the activations and their derivatives, the GEMM prologue
// that turns grad_out into grad_out * act'(y), and the fused epilogue
// (fp32 accumulator + bias -> activation -> output dtype).
//
// Conventions:
//   * kernels move 16-bit values as raw bits (`Num<T>::Raw` = unsigned short) and do all
//     arithmetic in fp32; `Num<T>` converts;
//   * activation codes are those of fastgan_kernels/activations.py (0 identity, 1 relu,
//     2 leaky_relu, 3 tanh, 4 sigmoid, 5 gelu, 6 gelu_tanh, 7 silu, 8 elu); `slope` is the
//     activation's parameter (leaky_relu's slope, elu's alpha). activation_forward and
//     activation_grad are the only switches on the code: a new activation is a case in each;
//   * the backward reads one saved tensor: the OUTPUT y = act(z) (act'(z) expressed through
//     y, exact because leaky_relu's slope and elu's alpha are >= 0, checked in Python, so
//     sign(y) == sign(z)), or the pre-activation z for gelu, gelu_tanh and silu, which are
//     not functions of y (activations.saves_preactivation).
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fastgan {
namespace cuda {

enum Activation : int {
  kIdentity = 0, kRelu = 1, kLeakyRelu = 2, kTanh = 3, kSigmoid = 4, kGelu = 5, kGeluTanh = 6, kSilu = 7, kElu = 8
};

// ---------------------------------------------------------------------------------------
// Number types
// ---------------------------------------------------------------------------------------
template <typename T>
struct Num;

template <>
struct Num<float> {
  using Raw = float;
  static constexpr bool kIs16Bit = false;
  __device__ __forceinline__ static float to_float(Raw r) { return r; }
  __device__ __forceinline__ static Raw from_float(float f) { return f; }
};

template <>
struct Num<__half> {
  using Raw = unsigned short;
  static constexpr bool kIs16Bit = true;
  __device__ __forceinline__ static float to_float(Raw r) { return __half2float(__ushort_as_half(r)); }
  __device__ __forceinline__ static Raw from_float(float f) { return __half_as_ushort(__float2half_rn(f)); }
};

template <>
struct Num<__nv_bfloat16> {
  using Raw = unsigned short;
  static constexpr bool kIs16Bit = true;
  __device__ __forceinline__ static float to_float(Raw r) { return __bfloat162float(__ushort_as_bfloat16(r)); }
  __device__ __forceinline__ static Raw from_float(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  }
};

template <typename T>
__device__ __forceinline__ typename Num<T>::Raw load_raw(const typename Num<T>::Raw* p) {
  return __ldg(p);  // every kernel input is read-only for the kernel's lifetime
}

// Writes a kernel's dynamic shared memory into its PTX as a comment ("// fastgan dynamic smem:
// N bytes"). ptxas -v reports static shared memory only; fastgan_kernels/aot/cuda.py reads this
// line so that the occupancy in docs/gpu_resources.md counts the buffer the launcher requests.
// No instruction is emitted.
#define FASTGAN_DYNAMIC_SMEM(bytes) asm volatile("// fastgan dynamic smem: %0 bytes" ::"n"(static_cast<int>(bytes)))

__host__ __device__ constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------
// Activations (forward on the pre-activation z, derivative through the output y)
// ---------------------------------------------------------------------------------------
// `act` is uniform across a launch, so the switch costs one predictable branch.
// relu / leaky_relu propagate NaN like torch (the comparison is false for NaN).
__device__ __forceinline__ float gelu_tanh_inner(float z) {  // tanh(sqrt(2/pi) (z + 0.044715 z^3))
  return tanhf(0.79788456080286536f * (z + 0.044715f * z * z * z));
}

__device__ __forceinline__ float activation_forward(float z, int act, float slope) {
  switch (act) {
    case kRelu: return z < 0.f ? 0.f : z;
    case kLeakyRelu: return z < 0.f ? z * slope : z;
    case kTanh: return tanhf(z);
    case kSigmoid: return 1.f / (1.f + expf(-z));
    case kGelu: return 0.5f * z * (1.f + erff(z * 0.70710678118654752f));
    case kGeluTanh: return 0.5f * z * (1.f + gelu_tanh_inner(z));
    case kSilu: return z / (1.f + expf(-z));
    case kElu: return z > 0.f ? z : slope * expm1f(z);  // NaN: expm1f(NaN) = NaN
    default: return z;
  }
}

// grad_out * act'(z), with act'(z) written through y = act(z):
//   relu' = [y > 0], leaky_relu' = y > 0 ? 1 : slope, tanh' = 1 - y^2, sigmoid' = y (1 - y),
//   elu' = y > 0 ? 1 : y + alpha; for gelu, gelu_tanh, silu the argument is z itself.
__device__ __forceinline__ float activation_grad(float g, float y, int act, float slope) {
  switch (act) {
    case kRelu: return y > 0.f ? g : 0.f;
    case kLeakyRelu: return y > 0.f ? g : g * slope;
    case kTanh: return g * (1.f - y * y);
    case kSigmoid: return g * (y * (1.f - y));
    case kGelu:  // Phi(z) + z phi(z), y = z
      return g * (0.5f * (1.f + erff(y * 0.70710678118654752f)) + y * expf(-0.5f * y * y) * 0.39894228040143268f);
    case kGeluTanh: {
      const float t = gelu_tanh_inner(y);
      return g * (0.5f * (1.f + t) + 0.5f * y * (1.f - t * t) * 0.79788456080286536f * (1.f + 0.134145f * y * y));
    }
    case kSilu: {
      const float s = 1.f / (1.f + expf(-y));
      return g * (s * (1.f + y * (1.f - s)));
    }
    case kElu: return y > 0.f ? g : g * (y + slope);
    default: return g;
  }
}

// ---------------------------------------------------------------------------------------
// Prologue: the A operand of the gradient GEMMs is grad_out, and the loaders replace every
// element by grad_out * act'(y) on its way from registers into shared memory. `act == 0`
// (identity) means "no prologue": y is never read and the plain (cp.async) loads apply.
// ---------------------------------------------------------------------------------------
template <typename T>
struct GradPrologue {
  using Raw = typename Num<T>::Raw;
  const Raw* y = nullptr;  // saved output (z for gelu / silu), element (i, r) at y[i * si + r * sr]
  int64_t si = 0, sr = 0;
  int act = kIdentity;
  float slope = 0.f;

  __device__ __forceinline__ bool active() const { return act != kIdentity; }
  __device__ __forceinline__ float apply(float g, float yv) const { return activation_grad(g, yv, act, slope); }
};

// ---------------------------------------------------------------------------------------
// Epilogue: out[i, j] = act(acc[i, j] + bias[j]) rounded once to the output dtype.
// The gradient GEMMs use it with no bias and the identity.
// ---------------------------------------------------------------------------------------
template <typename T>
struct BiasActEpilogue {
  using Raw = typename Num<T>::Raw;
  const Raw* bias = nullptr;  // bias[j * bias_stride], or none
  int64_t bias_stride = 1;
  int act = kIdentity;
  float slope = 0.f;

  // The bias of column j, 0 outside [0, cols) or without a bias (load it once per column).
  __device__ __forceinline__ float bias_at(int64_t j, int64_t cols) const {
    return (bias != nullptr && j < cols) ? Num<T>::to_float(load_raw<T>(bias + j * bias_stride)) : 0.f;
  }
  __device__ __forceinline__ Raw finish(float acc, float b) const {
    return Num<T>::from_float(activation_forward(acc + b, act, slope));
  }
};

// Stores of N consecutive outputs of one row (columns col .. col + N - 1) of a
// row-major [rows, cols] output with leading dimension ldc. `vec_ok` says that ldc and
// the base pointer allow an aligned N-wide store at any `col` that is a multiple of N.
template <typename T, int N>
struct VecRaw;
template <> struct VecRaw<float, 2> { using type = float2; };
template <> struct VecRaw<float, 4> { using type = float4; };
template <> struct VecRaw<__half, 2> { using type = unsigned int; };
template <> struct VecRaw<__half, 4> { using type = uint2; };
template <> struct VecRaw<__nv_bfloat16, 2> { using type = unsigned int; };
template <> struct VecRaw<__nv_bfloat16, 4> { using type = uint2; };

template <typename T, int N>
__device__ __forceinline__ void store_row_segment(typename Num<T>::Raw* out, int64_t ldc, int64_t row, int64_t col,
                                                  int64_t rows, int64_t cols, const float (&acc)[N],
                                                  const float (&bias)[N], const BiasActEpilogue<T>& epi,
                                                  bool vec_ok) {
  using Raw = typename Num<T>::Raw;
  if (row >= rows || col >= cols) return;
  Raw* dst = out + row * ldc + col;
  Raw v[N];
#pragma unroll
  for (int e = 0; e < N; ++e) v[e] = epi.finish(acc[e], bias[e]);
  if (vec_ok && col + N <= cols) {
    using V = typename VecRaw<T, N>::type;
    V packed;
    static_assert(sizeof(V) == sizeof(v), "vector store size");
    memcpy(&packed, v, sizeof(V));
    *reinterpret_cast<V*>(dst) = packed;
  } else {
#pragma unroll
    for (int e = 0; e < N; ++e)
      if (col + e < cols) dst[e] = v[e];
  }
}

// ---------------------------------------------------------------------------------------
// The problem every dense GEMM kernel here solves (forward and both gradient GEMMs):
//   C[i, j] = epi( sum_{r < depth} A(i, r) * B(j, r) ),  i < rows, j < cols,
// with A(i, r) = a[i * a_si + r * a_sr] (replaced by the prologue's grad * act'(y) when it
// is active) and B(j, r) = b[j * b_sj + r * b_sr], any strides (0 included); C is
// row-major with leading dimension ldc. The host fills the layout hints.
// ---------------------------------------------------------------------------------------
template <typename T>
struct GemmProblem {
  using Raw = typename Num<T>::Raw;
  const Raw* a = nullptr;
  int64_t a_si = 0, a_sr = 0;
  const Raw* b = nullptr;
  int64_t b_sj = 0, b_sr = 0;
  Raw* c = nullptr;
  int64_t ldc = 0;
  int64_t rows = 0, cols = 0, depth = 0;
  GradPrologue<T> pro;     // on A; inactive (identity) in the forward
  BiasActEpilogue<T> epi;  // bias + activation; none / identity for the gradients
  // Layout hints, from the host:
  bool a_vec = false, b_vec = false;  // tensor-core loads: 16-byte chunks along the contiguous dim are legal
  bool a_ifast = false, b_ifast = false;  // SIMT loads: the row index (not r) is the contiguous one
  int c_vec = 1;  // widest aligned store (1, 2 or 4 elements) that ldc and c allow
};

}  // namespace cuda
}  // namespace fastgan

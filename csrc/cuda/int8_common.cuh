// Int8 helpers and the quantisers of the CUDA int8 path (csrc/cuda/int8_linear.cu):
//   * round_clamp_int8: clamp(rint(v), -127, 127), round half to even, NaN -> -128;
//   * quantize_per_token_kernel / quantize_per_tensor_kernel;
//   * I8Epilogue: y = act(acc * x_scale[m] * w_scale[n] + bias[n]) written as fp32 / bf16 /
//     fp16, requantised int8 (y / out_scale) or the raw int32 accumulator.
//
// Exactness. Every quotient uses __fdiv_rn (IEEE round-to-nearest, like torch's fp32
// division, whatever the compiler's division flags) and rounding uses rintf (half to even,
// like torch.round), so q and the scales are bit-identical to ops/int8_linear.py's
// references. The epilogue multiplies and adds with __fmul_rn / __fadd_rn (never contracted
// into an FMA) in the reference's order ((acc * x_scale) * w_scale + bias), so the float
// value before the activation is bit-identical too.
//
// Non-finite input. The int8 range is symmetric, so -128 is never a quantised value and marks
// NaN (the Triton kernels' convention): NaN quantises to -128, +-Inf saturates to +-127. A
// per-token row holding any NaN or +-Inf gets scale = NaN (its q are then all -128) and no
// error is raised (that would need a host sync); every float output computed from that row's
// scale is NaN, which is how the CUDA path reports it (see ops/int8_linear.py).
#pragma once

#include <cstdint>

#include "common.cuh"

namespace fastgan {
namespace cuda {

constexpr float kFloatMax = 3.402823466e38f;

__device__ __forceinline__ int8_t round_clamp_int8(float v) {
  if (v != v) return -128;  // the NaN marker
  v = fminf(fmaxf(v, -127.f), 127.f);
  return static_cast<int8_t>(static_cast<int>(rintf(v)));
}

// --- quantisers ---------------------------------------------------------------------------------
constexpr int kQuantWarps = 8;  // rows per block of the per-token kernel (one warp per row)

// scale[m] = max|x[m, :]| / 127 (1/127 for an all-zero row, NaN for a non-finite row),
// q[m, k] = round_clamp_int8(x[m, k] / scale[m]); q is contiguous [M, K].
// `vec`: x's rows are contiguous, 16-byte aligned and K is a multiple of V (elements per
// 16 bytes), so each lane moves 16 bytes of x and V bytes of q per access.
template <typename T>
__global__ void __launch_bounds__(32 * kQuantWarps)
    quantize_per_token_kernel(const typename Num<T>::Raw* __restrict__ x, int64_t sm, int64_t sk, int64_t rows,
                              int64_t k, bool vec, int8_t* __restrict__ q, float* __restrict__ scale) {
  using Raw = typename Num<T>::Raw;
  constexpr int V = 16 / sizeof(Raw);
  const int lane = threadIdx.x & 31;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kQuantWarps + (threadIdx.x >> 5);
  if (row >= rows) return;  // warp-uniform
  const Raw* xr = x + row * sm;
  int8_t* qr = q + row * k;

  float amax = 0.f;  // fmaxf ignores NaN; non-finite values are flagged separately
  bool bad = false;
  if (vec) {
    for (int64_t k0 = static_cast<int64_t>(lane) * V; k0 < k; k0 += 32 * V) {
      const uint4 w = __ldg(reinterpret_cast<const uint4*>(xr + k0));
      Raw e[V];
      memcpy(e, &w, sizeof(w));
#pragma unroll
      for (int i = 0; i < V; ++i) {
        const float a = fabsf(Num<T>::to_float(e[i]));
        amax = fmaxf(amax, a);
        bad |= !(a <= kFloatMax);
      }
    }
  } else {
    for (int64_t kk = lane; kk < k; kk += 32) {
      const float a = fabsf(Num<T>::to_float(load_raw<T>(xr + kk * sk)));
      amax = fmaxf(amax, a);
      bad |= !(a <= kFloatMax);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  bad = __any_sync(0xffffffffu, bad);
  const float s = bad ? __int_as_float(0x7fc00000) : __fdiv_rn(amax > 0.f ? amax : 1.f, 127.f);
  if (lane == 0) scale[row] = s;

  if (vec) {
    for (int64_t k0 = static_cast<int64_t>(lane) * V; k0 < k; k0 += 32 * V) {
      const uint4 w = __ldg(reinterpret_cast<const uint4*>(xr + k0));
      Raw e[V];
      memcpy(e, &w, sizeof(w));
      int8_t o[V];
#pragma unroll
      for (int i = 0; i < V; ++i) o[i] = round_clamp_int8(__fdiv_rn(Num<T>::to_float(e[i]), s));
      if (V == 8) {
        uint2 packed;
        memcpy(&packed, o, sizeof(o));
        *reinterpret_cast<uint2*>(qr + k0) = packed;
      } else {
        uint32_t packed;
        memcpy(&packed, o, sizeof(o));
        *reinterpret_cast<uint32_t*>(qr + k0) = packed;
      }
    }
  } else {
    for (int64_t kk = lane; kk < k; kk += 32)
      qr[kk] = round_clamp_int8(__fdiv_rn(Num<T>::to_float(load_raw<T>(xr + kk * sk)), s));
  }
}

// q[m, k] = round_clamp_int8(x[m, k] / scale[0]). Grid: x over K (blockDim.x columns per
// block), y strides over the rows.
template <typename T>
__global__ void quantize_per_tensor_kernel(const typename Num<T>::Raw* __restrict__ x, int64_t sm, int64_t sk,
                                           int64_t rows, int64_t k, const float* __restrict__ scale,
                                           int8_t* __restrict__ q) {
  const int64_t kk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (kk >= k) return;
  const float s = __ldg(scale);
  for (int64_t m = blockIdx.y; m < rows; m += gridDim.y)
    q[m * k + kk] = round_clamp_int8(__fdiv_rn(Num<T>::to_float(load_raw<T>(x + m * sm + kk * sk)), s));
}

// --- GEMM epilogue ------------------------------------------------------------------------------
enum I8OutKind : int { kOutF32 = 0, kOutBF16 = 1, kOutF16 = 2, kOutI8 = 3, kOutI32 = 4 };

struct I8Epilogue {
  void* out = nullptr;  // row-major [rows, cols], leading dimension ldc
  int64_t ldc = 0, rows = 0, cols = 0;
  int kind = kOutF32;
  const float* xs = nullptr;  // x_scale[m * xs_stride] (xs_stride 0: one per-tensor scale)
  int64_t xs_stride = 0;
  const float* ws = nullptr;  // w_scale[n * ws_stride]
  int64_t ws_stride = 1;
  const float* bias = nullptr;  // bias[n * bias_stride] or none
  int64_t bias_stride = 1;
  const float* out_scale = nullptr;  // [1], int8 output only
  int act = kIdentity;
  float slope = 0.f;
  bool pair_ok = false;  // ldc even and `out` aligned for 2-element stores

  __device__ __forceinline__ float row_scale(int64_t i) const {
    return (kind != kOutI32 && i < rows) ? __ldg(xs + i * xs_stride) : 0.f;
  }
  __device__ __forceinline__ void col_params(int64_t j, float& w, float& b) const {
    const bool ok = kind != kOutI32 && j < cols;
    w = ok ? __ldg(ws + j * ws_stride) : 0.f;
    b = (ok && bias != nullptr) ? __ldg(bias + j * bias_stride) : 0.f;
  }
  __device__ __forceinline__ float value(int32_t acc, float xsv, float wsv, float b) const {
    float y = __fmul_rn(__fmul_rn(__int2float_rn(acc), xsv), wsv);
    if (bias != nullptr) y = __fadd_rn(y, b);
    return activation_forward(y, act, slope);
  }

  // Outputs (row, col) and (row, col + 1) from two accumulators; `os` = *out_scale (int8 only).
  __device__ __forceinline__ void store2(int64_t row, int64_t col, int32_t a0, int32_t a1, float xsv,
                                         const float (&wsv)[2], const float (&b)[2], float os) const {
    if (row >= rows || col >= cols) return;
    const bool pair = pair_ok && col + 1 < cols;  // col is even
    const int64_t off = row * ldc + col;
    const int32_t acc[2] = {a0, a1};
    if (kind == kOutI32) {
      int32_t* o = static_cast<int32_t*>(out) + off;
      if (pair) *reinterpret_cast<int2*>(o) = make_int2(a0, a1);
      else o[0] = a0;
      if (!pair && col + 1 < cols) o[1] = a1;
      return;
    }
    float y[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) y[e] = value(acc[e], xsv, wsv[e], b[e]);
    if (kind == kOutF32) {
      float* o = static_cast<float*>(out) + off;
      if (pair) {
        *reinterpret_cast<float2*>(o) = make_float2(y[0], y[1]);
      } else {
        o[0] = y[0];
        if (col + 1 < cols) o[1] = y[1];
      }
    } else if (kind == kOutI8) {
      int8_t* o = static_cast<int8_t*>(out) + off;
      const int8_t q0 = round_clamp_int8(__fdiv_rn(y[0], os)), q1 = round_clamp_int8(__fdiv_rn(y[1], os));
      if (pair) {
        *reinterpret_cast<uint16_t*>(o) = static_cast<uint16_t>(static_cast<uint8_t>(q0) |
                                                                (static_cast<uint16_t>(static_cast<uint8_t>(q1)) << 8));
      } else {
        o[0] = q0;
        if (col + 1 < cols) o[1] = q1;
      }
    } else {
      unsigned short h[2];
#pragma unroll
      for (int e = 0; e < 2; ++e)
        h[e] = kind == kOutBF16 ? Num<__nv_bfloat16>::from_float(y[e]) : Num<__half>::from_float(y[e]);
      unsigned short* o = static_cast<unsigned short*>(out) + off;
      if (pair) {
        *reinterpret_cast<uint32_t*>(o) = static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
      } else {
        o[0] = h[0];
        if (col + 1 < cols) o[1] = h[1];
      }
    }
  }
};

}  // namespace cuda
}  // namespace fastgan

// The CPU GEMM core shared by the fused-linear forward and backward (and, later, the
// block-sparse and int8 kernels).
//
//   C[m, n] = epilogue( sum_k  prologue(A)[m, k] * B[k, n] ),   m < M, n < N, k < K
//
//   prologue(A)[m, k] = A[m, k] * act'(Y[m, k])   (optional; Y is a same-shaped "derivative
//                        source" holding the activation's OUTPUT, see activation.h)
//   epilogue(s)[m, n] = act(s + bias[n])          (bias optional), then rounded to C's dtype
//
// A, B and Y are strided views of any strides (zero, negative-free, transposed) in fp32,
// bf16 or fp16; accumulation is always fp32. C is written row-major with leading
// dimension ldc. The three uses in fused_linear.cpp:
//   forward       y  = act(x @ W^T + b):  A = x [M,K],  B[k,n] = W[n,k]
//   grad_x        gx = g @ W:             A = grad_out (prologue with y), B = W
//   grad_weight   gw = g^T @ x:           A[n,m] = grad_out[m,n] (prologue with y), B = x
//
// Internal layout of the implementation (every piece documented in its header):
//   gemm/tile.h             TileOut (micro-kernel <-> driver contract), Operand, conversions
//   gemm/driver.h           blocked kc/mc/nc loops, thread partition, scratch (templated
//                           on a kernel "traits" struct: packers + micro-kernel)
//   ../parallel.h           parallel_for on torch's OpenMP team (the build has no -fopenmp)
//   gemm/pack_portable.h    scalar packers (any stride, any dtype, optional prologue)
//   gemm/pack_avx512.h      vectorised packers: fp32 panels and bf16 VNNI pair panels
//   gemm/epilogue_avx512.h  bias + activation + dtype conversion of zmm accumulators
//   gemm/microkernel_avx512.h  8x48 fp32 FMA and bf16 vdpbf16ps micro-kernels
//   gemm/small_m_avx512.h   batch 33..64 forward: weight rows broadcast in place (no W pack)
//   gemm/dot_avx512.h       forward with N <= 4 or M <= 4: one dot product per output, nothing packed
//   gemm/amx_bf16_kernel.h  AMX bf16 traits, compiled against real tiles and emulation
//   gemm_*.cpp              one translation unit per ISA path (portable, avx2_f32,
//                           avx512_f32, avx512_bf16, amx_bf16[_emulated]), own targets
//   gemm_blas_f32.cpp       fp32 below AVX-512: at::mm into C, then our epilogue in place
//   gemm_dispatch.cpp       run(): picks the path from isa_level() and features()
#pragma once

#include <cstdint>

namespace fastgan {
namespace cpu {
namespace gemm {

enum class DType : int8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

inline int dtype_size(DType d) { return d == DType::kF32 ? 4 : 2; }

// A strided 2-D view: element (i, j) lives at data + (i * rs + j * cs) * dtype_size.
struct Mat {
  const void* data = nullptr;
  int64_t rs = 0, cs = 0;
  DType dtype = DType::kF32;
};

struct Problem {
  int64_t M = 0, N = 0, K = 0;
  Mat a;  // [M, K]
  Mat b;  // [K, N]
  // Prologue: when dact != 0 (identity), A[m,k] is multiplied by act'(y[m,k]) while A is
  // packed; `y` has A's shape and its own strides.
  Mat y;
  int dact = 0;
  float dact_slope = 0.f;
  // Epilogue.
  const float* bias = nullptr;  // [N] fp32, or null
  int act = 0;
  float slope = 0.f;
  // Output, row-major [M, N].
  void* c = nullptr;
  int64_t ldc = 0;
  DType c_dtype = DType::kF32;
};

// The code paths run() can take (names returned by path_name()).
enum class Path : int {
  kPortable = 0,       // plain C++, fp32 accumulate (any machine)
  kAvx512F32 = 1,      // AVX-512 FMA micro-kernel on fp32 panels (bf16/fp16 converted)
  kAvx512Bf16 = 2,     // AVX512-BF16 vdpbf16ps micro-kernel (bf16 operands only)
  kAmxBf16 = 3,        // AMX tdpbf16ps (bf16 operands, Sapphire Rapids and later)
  kAmxBf16Emulated = 4, // the same AMX kernel against amx_emulation.h (tests only)
  kAvx2F32 = 5,        // AVX2 + FMA micro-kernel on fp32 panels (x86-64 without AVX-512)
  kBlasF32 = 6         // fp32 below AVX-512: ATen's sgemm (MKL/oneDNN) + our AVX2 epilogue
};

// C = epilogue(prologue(A) @ B), parallel over at::get_num_threads() threads.
void run(const Problem& p);

// out[n] = sum over m < M of G[m, n] * act'(Y[m, n]) (act' as in the prologue; Y unused
// when dact == 0), accumulated in fp32: the bias gradient, one pass over G and Y.
void column_sums(int64_t M, int64_t N, const Mat& g, const Mat& y, int dact, float slope, float* out);
// The path run() takes now for operands of dtype `dt` (depends on the ISA cap).
Path select_path(DType dt);
const char* path_name(Path path);
// Test-only switch: route bf16 problems through the emulated AMX kernel (when the
// machine has AVX-512, which its packing and epilogue use). Returns the previous value.
bool set_amx_emulation(bool on);
// Test-only switch: allow the vendor-GEMM path (kBlasF32) for fp32 below AVX-512; off
// forces the AVX2 micro-kernel there. On by default. Returns the previous value.
bool set_blas_gemm(bool on);

// Per-path entry points (defined in the gemm_*.cpp files; each exists on every
// platform but only runs where dispatch allows it).
void run_portable(const Problem& p);
void run_avx2_f32(const Problem& p);
void run_blas_f32(const Problem& p);  // fp32 A, B, C only (gemm_blas_f32.cpp)
void run_avx512_f32(const Problem& p);
void run_avx512_bf16(const Problem& p);
void run_amx_bf16(const Problem& p);
void run_amx_bf16_emulated(const Problem& p);
// column_sums over columns [n0, n1) (out points at column n0), one thread.
void column_sums_portable(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                          float* out);
void column_sums_avx512(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                        float* out);
void column_sums_avx2(int64_t M, int64_t n0, int64_t n1, const Mat& g, const Mat& y, int dact, float slope,
                      float* out);

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

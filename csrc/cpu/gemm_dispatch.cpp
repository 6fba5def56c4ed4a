// Chooses the GEMM core's code path at run time (gemm/gemm.h):
//
//   bf16 operands:  AMX emulation (test switch)  >  AMX tdpbf16ps  >  AVX512-BF16 vdpbf16ps
//                   > AVX-512 fp32  >  portable
//   fp32 / fp16:    AVX-512 fp32 (fp16 converted while packing)  >  vendor GEMM + our
//                   epilogue (fp32 operands and output; see below)  >  AVX2 fp32  >  portable
//
// from fastgan::cpu::isa_level() (the machine's best level, lowered by the test cap) and
// features() (avx512_bf16 is a separate bit of the AVX512-VNNI level; AMX needs its
// bf16 bit and the OS permission). bf16 below AVX-512 goes through the fp32 kernels.
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "cpu_features.h"
#include "parallel.h"
#include "gemm/gemm.h"
#include "gemm/tile.h"
#include "activation.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

std::atomic<bool> g_amx_emulation{false};
std::atomic<bool> g_blas_gemm{true};

// Below AVX-512, ATen's sgemm (MKL / oneDNN) beats our AVX2 micro-kernel, so all-fp32
// problems take it (gemm_blas_f32.cpp). Kept on the AVX2 kernel: 16-bit operands or
// output (the vendor call would need converted copies), and tiny products where the
// at::mm call (tensor wrapping, dispatch) costs more than the arithmetic.
constexpr int64_t kBlasMinFlops = 32768;  // M * N * K below this: AVX2 micro-kernel
bool blas_fits(const Problem& p) {
  return p.a.dtype == DType::kF32 && p.b.dtype == DType::kF32 && p.c_dtype == DType::kF32 &&
         (p.dact == kIdentity || p.y.dtype == DType::kF32) && p.M * p.N * p.K >= kBlasMinFlops;
}

// K == 0: every sum is empty, C = act(bias). (The Python layer refuses K == 0; the
// kernels still never leave C unwritten.)
void run_empty_k(const Problem& p) {
  const int sz = dtype_size(p.c_dtype);
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t n = 0; n < p.N; ++n) {
      const float s = act_ref(p.act, p.bias ? p.bias[n] : 0.f, p.slope);
      store_scalar(static_cast<char*>(p.c) + (m * p.ldc + n) * sz, p.c_dtype, s);
    }
}

}  // namespace

Path select_path(DType dt) {
  const IsaLevel level = isa_level();
  const Features& f = features();
  if (dt == DType::kBF16) {
    if (g_amx_emulation.load(std::memory_order_relaxed) && level >= kAvx512) return Path::kAmxBf16Emulated;
    if (level >= kAmx && f.amx_bf16 && f.amx_permitted) return Path::kAmxBf16;
    if (level >= kAvx512Vnni && f.avx512_bf16) return Path::kAvx512Bf16;
  }
  if (level >= kAvx512) return Path::kAvx512F32;
  if (level >= kAvx2)  // fp16 operands never fit the vendor path (blas_fits)
    return dt == DType::kF32 && g_blas_gemm.load(std::memory_order_relaxed) ? Path::kBlasF32 : Path::kAvx2F32;
  return Path::kPortable;
}

const char* path_name(Path path) {
  switch (path) {
    case Path::kAvx512F32: return "avx512_fp32";
    case Path::kAvx512Bf16: return "avx512_bf16";
    case Path::kAmxBf16: return "amx_bf16";
    case Path::kAmxBf16Emulated: return "amx_bf16_emulated";
    case Path::kAvx2F32: return "avx2_fp32";
    case Path::kBlasF32: return "blas_fp32_epilogue";
    default: return "portable";
  }
}

bool set_amx_emulation(bool on) { return g_amx_emulation.exchange(on); }
bool set_blas_gemm(bool on) { return g_blas_gemm.exchange(on); }

void column_sums(int64_t M, int64_t N, const Mat& g, const Mat& y, int dact, float slope, float* out) {
  // The vector versions read rows of G (and Y) as contiguous runs of columns.
  const bool rows = g.cs == 1 && (dact == kIdentity || y.cs == 1);
  const IsaLevel level = rows ? isa_level() : kPortable;
  constexpr int64_t kCols = 128;  // columns per task
  const int64_t blocks = ceil_div(N, kCols);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(M * kCols, 1));
  parallel_for(0, blocks, grain, [&](int64_t b, int64_t e) {
    const int64_t n0 = b * kCols, n1 = std::min(N, e * kCols);
    if (level >= kAvx512) column_sums_avx512(M, n0, n1, g, y, dact, slope, out + n0);
    else if (level >= kAvx2) column_sums_avx2(M, n0, n1, g, y, dact, slope, out + n0);
    else column_sums_portable(M, n0, n1, g, y, dact, slope, out + n0);
  });
}

void run(const Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0) return run_empty_k(p);
  // The bf16 kernels need both operands in bf16; mixed problems take the fp32 kernels.
  const DType dt = (p.a.dtype == DType::kBF16 && p.b.dtype == DType::kBF16) ? DType::kBF16 : DType::kF32;
  switch (select_path(dt)) {
    case Path::kAmxBf16Emulated: return run_amx_bf16_emulated(p);
    case Path::kAmxBf16: return run_amx_bf16(p);
    case Path::kAvx512Bf16: return run_avx512_bf16(p);
    case Path::kAvx512F32: return run_avx512_f32(p);
    case Path::kBlasF32: return blas_fits(p) ? run_blas_f32(p) : run_avx2_f32(p);
    case Path::kAvx2F32: return run_avx2_f32(p);
    default: return run_portable(p);
  }
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

// CPU kernels of fastgan_ext::bsr_linear_fwd / bsr_linear_bwd (schemas in ops.cpp): the
// argument checks that protect memory, the choice of code path, and the bias gradient.
// The kernels themselves: bsr/driver.h (AVX-512 fp32 and vdpbf16ps, AVX2 fp32, over the
// GEMM core's packers, micro-kernel k loops and register epilogues) and bsr_portable.cpp.
//
// Paths (isa_level(), lowered by the test cap fastgan_ext::set_cpu_isa):
//   portable      below AVX2 (any x86-64 / aarch64)
//   avx2_fp32     AVX2 + FMA without AVX-512, every dtype (bf16 / fp16 converted to fp32
//                 while packed)
//   avx512_bf16   bf16 operands with AVX512-BF16, except on the AMX generation, where
//                 vdpbf16ps is slower than the fp32 FMAs (docs: CPU_NOTES.md; ~0.2 vs ~0.46
//                 TFLOP/s), so bf16 takes avx512_fp32 there unless the cap is below AMX
//   avx512_fp32   everything else (bf16 / fp16 converted to fp32 while packed)
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>
#include <string>
#include <tuple>

#include "activation.h"
#include "bsr/problem.h"
#include "cpu_features.h"
#include "gemm/gemm.h"
#include "gemm/tile.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

enum class Path { kPortable, kAvx2F32, kAvx512F32, kAvx512Bf16 };

Path bsr_path(DType dt) {
  const IsaLevel level = isa_level();
  if (level < kAvx2) return Path::kPortable;
  if (level < kAvx512) return Path::kAvx2F32;
  if (dt == DType::kBF16 && level >= kAvx512Vnni && level < kAmx && features().avx512_bf16) return Path::kAvx512Bf16;
  return Path::kAvx512F32;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAvx512Bf16: return "avx512_bf16";
    case Path::kAvx512F32: return "avx512_fp32";
    case Path::kAvx2F32: return "avx2_fp32";
    default: return "portable";
  }
}

DType dtype_of(const at::Tensor& t, const char* what) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::kF32;
    case at::kBFloat16: return DType::kBF16;
    case at::kHalf: return DType::kF16;
    default: TORCH_CHECK(false, "bsr_linear (cpu): ", what, " must be float32, bfloat16 or float16, got ",
                         t.scalar_type());
  }
}

void check_2d(const at::Tensor& t, const char* what, int64_t rows, int64_t cols) {
  TORCH_CHECK(t.dim() == 2 && t.device().is_cpu(), "bsr_linear (cpu): ", what, " must be a 2-D CPU tensor");
  TORCH_CHECK(t.size(0) == rows && t.size(1) == cols, "bsr_linear (cpu): ", what, " must be [", rows, ", ", cols,
              "], got ", t.sizes());
}

Mat view(const at::Tensor& t) {
  Mat m;
  m.data = t.data_ptr();
  m.rs = t.stride(0), m.cs = t.stride(1);
  m.dtype = dtype_of(t, "tensor");
  return m;
}

const int32_t* index(const at::Tensor& t, const char* what, int64_t size) {
  TORCH_CHECK(t.dim() == 1 && t.scalar_type() == at::kInt && t.is_contiguous() && t.device().is_cpu(),
              "bsr_linear (cpu): ", what, " must be a contiguous 1-D int32 CPU tensor");
  TORCH_CHECK(t.size(0) == size, "bsr_linear (cpu): ", what, " must have ", size, " entries, got ", t.size(0));
  return t.data_ptr<int32_t>();
}

// A compressed index (ptr [lines + 1], idx [nnz] in [0, bound)) that cannot make a kernel
// read or write out of bounds: O(lines + nnz), small next to the products.
void check_compressed(const int32_t* ptr, int64_t lines, const int32_t* idx, int64_t nnz, int64_t bound,
                      const char* what) {
  TORCH_CHECK(ptr[0] == 0 && ptr[lines] == nnz, "bsr_linear (cpu): ", what, " pointers must run from 0 to ", nnz);
  for (int64_t l = 0; l < lines; ++l)
    TORCH_CHECK(ptr[l] <= ptr[l + 1], "bsr_linear (cpu): ", what, " pointers must not decrease");
  for (int64_t j = 0; j < nnz; ++j)
    TORCH_CHECK(idx[j] >= 0 && idx[j] < bound, "bsr_linear (cpu): ", what, " indices must be in [0, ", bound, ")");
}

Structure structure(const at::Tensor& values, const at::Tensor& row_ptr, const at::Tensor& col_idx, int64_t N,
                    int64_t K, const at::Tensor& x) {
  TORCH_CHECK(values.dim() == 3 && values.is_contiguous() && values.device().is_cpu(),
              "bsr_linear (cpu): values must be a contiguous [nnz_blocks, bn, bk] CPU tensor");
  TORCH_CHECK(values.scalar_type() == x.scalar_type(), "bsr_linear (cpu): values dtype ", values.scalar_type(),
              " != x dtype ", x.scalar_type());
  Structure w;
  w.N = N, w.K = K, w.nnz = values.size(0), w.bn = values.size(1), w.bk = values.size(2);
  for (int64_t b : {w.bn, w.bk})
    TORCH_CHECK(b >= 16 && b <= 256 && (b & (b - 1)) == 0, "bsr_linear (cpu): block sizes must be powers of two in "
                "[16, 256], got ", values.sizes());
  TORCH_CHECK(N > 0 && K > 0, "bsr_linear (cpu): out_features and in_features must be positive");
  w.nbr = (N + w.bn - 1) / w.bn, w.nbc = (K + w.bk - 1) / w.bk;
  w.row_ptr = index(row_ptr, "row_ptr", w.nbr + 1);
  w.col_idx = index(col_idx, "col_idx", w.nnz);
  check_compressed(w.row_ptr, w.nbr, w.col_idx, w.nnz, w.nbc, "row_ptr/col_idx");
  w.values = values.data_ptr();
  w.vdtype = dtype_of(values, "values");
  return w;
}

at::Tensor bsr_linear_fwd(const at::Tensor& x, const at::Tensor& values, const at::Tensor& row_ptr,
                          const at::Tensor& col_idx, const std::optional<at::Tensor>& bias, int64_t out_features,
                          int64_t activation, double negative_slope) {
  TORCH_CHECK(x.dim() == 2 && x.device().is_cpu(), "bsr_linear (cpu): x must be a 2-D CPU tensor");
  TORCH_CHECK(activation >= 0 && activation < kNumActivations, "bsr_linear (cpu): activation code must be in 0..",
              kNumActivations - 1);
  const int64_t M = x.size(0), K = x.size(1), N = out_features;
  Forward p;
  p.w = structure(values, row_ptr, col_idx, N, K, x);
  at::Tensor bias32;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == N && bias->scalar_type() == x.scalar_type(),
                "bsr_linear (cpu): bias must be [", N, "] in x's dtype");
    bias32 = bias->to(at::kFloat).contiguous();
  }
  at::Tensor y = at::empty({M, N}, x.options());
  if (M == 0) return y;
  p.M = M;
  p.x = view(x);
  p.bias = bias32.defined() ? bias32.data_ptr<float>() : nullptr;
  p.act = static_cast<int>(activation), p.slope = static_cast<float>(negative_slope);
  p.y = y.data_ptr(), p.ydtype = p.x.dtype;
  if (p.w.nnz == 0) {  // every block pruned: each row is act(bias), nothing to pack or multiply
    char* out = static_cast<char*>(p.y);
    const int64_t row_bytes = N * gemm::dtype_size(p.ydtype);
    for (int64_t n = 0; n < N; ++n)
      gemm::store_scalar(out + n * gemm::dtype_size(p.ydtype), p.ydtype,
                         act_ref(p.act, p.bias ? p.bias[n] : 0.f, p.slope));
    for (int64_t m = 1; m < M; ++m) std::memcpy(out + m * row_bytes, out, row_bytes);
    return y;
  }
  switch (bsr_path(p.x.dtype)) {
    case Path::kAvx512Bf16: forward_avx512_bf16(p); break;
    case Path::kAvx512F32: forward_avx512_f32(p); break;
    case Path::kAvx2F32: forward_avx2_f32(p); break;
    default: forward_portable(p);
  }
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bsr_linear_bwd(
    const at::Tensor& grad_out, const at::Tensor& y, const at::Tensor& x, const at::Tensor& values,
    const at::Tensor& row_ptr, const at::Tensor& col_idx, const at::Tensor& t_row_ptr, const at::Tensor& t_col_idx,
    const at::Tensor& t_block, int64_t activation, double negative_slope, bool need_x, bool need_values,
    bool need_bias) {
  TORCH_CHECK(x.dim() == 2 && grad_out.dim() == 2, "bsr_linear_bwd (cpu): x and grad_out must be 2-D");
  TORCH_CHECK(activation >= 0 && activation < kNumActivations, "bsr_linear_bwd (cpu): activation code must be in 0..",
              kNumActivations - 1);
  const int64_t M = x.size(0), K = x.size(1), N = grad_out.size(1);
  check_2d(grad_out, "grad_out", M, N);
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), "bsr_linear_bwd (cpu): grad_out dtype must match x");
  Backward p;
  p.w = structure(values, row_ptr, col_idx, N, K, x);
  p.dact = static_cast<int>(activation), p.slope = static_cast<float>(negative_slope);
  if (p.dact != kIdentity) {
    check_2d(y, "y", M, N);
    TORCH_CHECK(y.scalar_type() == x.scalar_type(), "bsr_linear_bwd (cpu): y dtype must match x");
    p.y = view(y);
  }
  p.M = M, p.g = view(grad_out), p.x = view(x);
  at::Tensor gx, gv, gb;
  if (need_x) {
    p.w.t_row_ptr = index(t_row_ptr, "t_row_ptr", p.w.nbc + 1);
    p.w.t_col_idx = index(t_col_idx, "t_col_idx", p.w.nnz);
    p.w.t_block = index(t_block, "t_block", p.w.nnz);
    check_compressed(p.w.t_row_ptr, p.w.nbc, p.w.t_col_idx, p.w.nnz, p.w.nbr, "t_row_ptr/t_col_idx");
    check_compressed(p.w.t_row_ptr, p.w.nbc, p.w.t_block, p.w.nnz, p.w.nnz, "t_row_ptr/t_block");
    gx = at::empty({M, K}, x.options());
    p.gx = gx.data_ptr();
  }
  if (need_values) {
    gv = at::empty(values.sizes(), values.options());
    p.gv = gv.data_ptr();
  }
  if (M == 0 || p.w.nnz == 0) {  // empty sums: zero gradients (and no blocks to differentiate)
    if (need_values) gv.zero_();
    if (need_x) gx.zero_();
  } else if (need_x || need_values) {
    switch (bsr_path(p.x.dtype)) {
      case Path::kAvx512Bf16: backward_avx512_bf16(p); break;
      case Path::kAvx512F32: backward_avx512_f32(p); break;
      case Path::kAvx2F32: backward_avx2_f32(p); break;
      default: backward_portable(p);
    }
  }
  if (need_bias) {
    at::Tensor sums = at::empty({N}, x.options().dtype(at::kFloat));
    gemm::column_sums(M, N, p.g, p.y, p.dact, p.slope, sums.data_ptr<float>());
    gb = values.scalar_type() == at::kFloat ? sums : sums.to(values.scalar_type());
  }
  return {gx, gv, gb};
}

// Test-only: the path the block-sparse kernels take now for `dtype`.
std::string bsr_linear_cpu_path(c10::ScalarType dtype) {
  const DType dt = dtype == c10::kBFloat16 ? DType::kBF16 : dtype == c10::kHalf ? DType::kF16 : DType::kF32;
  return path_name(bsr_path(dt));
}

}  // namespace
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

TORCH_LIBRARY_FRAGMENT(fastgan_ext, m) {
  m.def("bsr_linear_cpu_path(ScalarType dtype) -> str", &fastgan::cpu::bsr::bsr_linear_cpu_path);  // tests only
}

TORCH_LIBRARY_IMPL(fastgan_ext, CPU, m) {
  m.impl("bsr_linear_fwd", &fastgan::cpu::bsr::bsr_linear_fwd);
  m.impl("bsr_linear_bwd", &fastgan::cpu::bsr::bsr_linear_bwd);
}

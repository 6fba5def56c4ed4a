// CPU kernels of the int8 ops of fastgan_ext (schemas in csrc/ops.cpp): argument checks,
// output allocation and the run-time choice of code path. The kernels are in int8/int8.h.
//
//   quantize_per_token(x)         per-row scale and int8 q; ValueError on a NaN / Inf row
//   quantize_per_tensor(x, s)     int8 q with the given scale [1]; ValueError on NaN / Inf
//   int8_pack_weight(wq)          the packed blob (int8/packed_weight.h)
//   int8_linear_fwd(...)          int32 GEMM on the blob + the fused epilogue
//   int8_linear_dynamic_fwd(x...) the same on a float x quantised per token while the GEMM
//                                 packs it (bit for bit quantize_per_token + int8_linear_fwd)
//
// GEMM paths, best first (select_path):
//   AMX emulation (the test switch fastgan_ext::set_amx_emulation, shared with the bf16 GEMM)
//   > AMX tdpbssd (Sapphire Rapids; amx_int8 and the OS permission) > AVX512-VNNI vpdpbusd
//   > AVX2 vpmaddwd (int8_avx2.cpp) > portable. Quantisers: AVX-512 > AVX2 > portable. All
//   respect the ISA cap (set_cpu_isa).
//
// Test-only op, defined here as a fragment of the library: int8_linear_cpu_path() -> the path
// int8_linear_fwd takes now ("portable", "avx2", "avx512_vnni", "amx_int8", "amx_int8_emulated").
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "activation.h"
#include "cpu_features.h"
#include "gemm/gemm.h"
#include "int8/aten_args.h"
#include "int8/int8.h"
#include "int8/packed_weight.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {

Path select_path() {
  // The emulation switch is read through the bf16 GEMM's dispatch (on only with AVX-512,
  // which the packing and the epilogue of the AMX kernel use).
  if (gemm::select_path(gemm::DType::kBF16) == gemm::Path::kAmxBf16Emulated) return Path::kAmxEmulated;
  const IsaLevel level = isa_level();
  const Features& f = features();
  if (level >= kAmx && f.amx_int8 && f.amx_permitted) return Path::kAmx;
  if (level >= kAvx512Vnni && f.avx512_vnni) return Path::kAvx512Vnni;
  if (level >= kAvx2) return Path::kAvx2;
  return Path::kPortable;
}

const char* path_name(Path p) {
  switch (p) {
    case Path::kAvx512Vnni: return "avx512_vnni";
    case Path::kAmx: return "amx_int8";
    case Path::kAmxEmulated: return "amx_int8_emulated";
    case Path::kAvx2: return "avx2";
    default: return "portable";
  }
}

Split split_work(int64_t M, int64_t K, int64_t nblocks, int64_t cols_per_block, int64_t row_unit) {
  Split s;
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t row_units = std::max<int64_t>(1, ceil_div(M, row_unit));
  if (nblocks < 2 * threads) s.msplit = std::min(row_units, ceil_div(2 * threads, std::max<int64_t>(1, nblocks)));
  s.tasks = std::max<int64_t>(1, nblocks) * s.msplit;
  // At least ~4 M multiply-adds (~10-20 us) per thread: a parallel region costs a few us, and
  // on a busy machine a descheduled team member stalls the whole region, so small layers
  // stay on one thread.
  const int64_t macs = std::max<int64_t>(1, ceil_div(M, s.msplit) * cols_per_block * std::max<int64_t>(K, 1));
  s.grain = std::max<int64_t>(1, (int64_t{1} << 22) / macs);
  return s;
}

QuantRowsFn quantizer() {
  const IsaLevel level = isa_level();
  return level >= kAvx512 ? &quantize_rows_avx512 : level >= kAvx2 ? &quantize_rows_avx2 : &quantize_rows_portable;
}

int64_t run_gemm(const GemmArgs& g) {
  switch (select_path()) {
    case Path::kAmxEmulated: return gemm_amx_emulated(g);
    case Path::kAmx: return gemm_amx(g);
    case Path::kAvx512Vnni: return gemm_vnni(g);
    case Path::kAvx2: return gemm_avx2(g);
    default: return gemm_portable(g);
  }
}

namespace {

InType in_type(const at::Tensor& x, const char* op) {
  switch (x.scalar_type()) {
    case at::kFloat: return InType::kF32;
    case at::kBFloat16: return InType::kBF16;
    case at::kHalf: return InType::kF16;
    default: TORCH_CHECK_TYPE(false, op, " (cpu): x must be float32, bfloat16 or float16, got ", x.scalar_type());
  }
}

void check_2d(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.dim() == 2, op, " (cpu): ", name, " must be 2-D, got ", t.dim(), "-D");
  TORCH_CHECK_VALUE(t.device().is_cpu(), op, " (cpu): ", name, " must be a CPU tensor");
}

void raise_non_finite(const char* op, int64_t row) {
  TORCH_CHECK_VALUE(false, op, ": x has NaN or Inf (first in row ", row, "); int8 quantisation would lose it");
}

// Runs the row quantiser over [0, M) in parallel; raises on the first non-finite row.
void quantize(const QuantArgs& a, const char* op) {
  const QuantRowsFn rows = quantizer();
  FirstBadRow bad;
  // ~64 K elements (~15 us) per thread at least (see split_work).
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(1, a.K));
  parallel_for(0, a.M, grain, [&](int64_t b, int64_t e) {
    const int64_t r = rows(a, b, e);
    if (r >= 0) bad.note(r);
  });
  if (bad.any()) raise_non_finite(op, bad.row());
}

QuantArgs quant_args(const at::Tensor& x, at::Tensor& q, const char* op) {
  QuantArgs a;
  a.M = x.size(0), a.K = x.size(1);
  a.x = x.data_ptr(), a.rs = x.stride(0), a.cs = x.stride(1);
  a.dt = in_type(x, op);
  a.q = q.data_ptr<int8_t>();
  return a;
}

std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x) {
  const char* op = "quantize_per_token";
  check_2d(x, op, "x");
  at::Tensor q = at::empty({x.size(0), x.size(1)}, x.options().dtype(at::kChar));
  at::Tensor scale = at::empty({x.size(0)}, x.options().dtype(at::kFloat));
  QuantArgs a = quant_args(x, q, op);
  a.scale = scale.data_ptr<float>();
  if (a.M > 0) quantize(a, op);
  return {q, scale};
}

at::Tensor quantize_per_tensor(const at::Tensor& x, const at::Tensor& scale) {
  const char* op = "quantize_per_tensor";
  check_2d(x, op, "x");
  TORCH_CHECK_VALUE(scale.numel() == 1 && scale.scalar_type() == at::kFloat && scale.device().is_cpu(), op,
                    " (cpu): scale must be a float32 CPU tensor of one element");
  at::Tensor q = at::empty({x.size(0), x.size(1)}, x.options().dtype(at::kChar));
  QuantArgs a = quant_args(x, q, op);
  a.tensor_scale = *scale.data_ptr<float>();
  if (a.M > 0 && a.K > 0) quantize(a, op);
  return q;
}

at::Tensor int8_pack_weight(const at::Tensor& wq) {
  check_2d(wq, "int8_pack_weight", "wq");
  TORCH_CHECK_TYPE(wq.scalar_type() == at::kChar, "int8_pack_weight (cpu): wq must be int8, got ", wq.scalar_type());
  const PackedHeader h = packed_layout(wq.size(0), wq.size(1));
  at::Tensor blob = at::empty({h.total_bytes}, wq.options().dtype(at::kByte));
  uint8_t* out = blob.data_ptr<uint8_t>();
  std::memset(out, 0, 64);
  std::memcpy(out, &h, sizeof(h));
  const int8_t* w = wq.data_ptr<int8_t>();
  const int64_t rs = wq.stride(0), cs = wq.stride(1);
  parallel_for(0, h.panels, 1, [&](int64_t b, int64_t e) { pack_panels(w, rs, cs, h, out, b, e); });
  return blob;
}

at::Tensor small_vector(const at::Tensor& t, int64_t n, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.numel() == n, op, " (cpu): ", name,
                    " must be a float32 CPU tensor of ", n, " elements, got ", t.scalar_type(), " ", t.sizes());
  return t.reshape({n}).contiguous();
}

}  // namespace

at::Tensor epilogue_args(GemmArgs& g, std::vector<at::Tensor>& keep, const char* op, const at::TensorOptions& opts,
                         const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, int64_t activation,
                         double negative_slope, at::ScalarType out_dtype, const std::optional<at::Tensor>& out_scale) {
  TORCH_CHECK_VALUE(activation >= 0 && activation < kNumActivations, op, " (cpu): activation code must be in 0..",
                    kNumActivations - 1);
  const int64_t N = g.N;
  Epilogue& e = g.e;
  switch (out_dtype) {
    case at::kFloat: e.kind = OutKind::kF32; break;
    case at::kBFloat16: e.kind = OutKind::kBF16; break;
    case at::kHalf: e.kind = OutKind::kF16; break;
    case at::kChar: e.kind = OutKind::kI8; break;
    case at::kInt: e.kind = OutKind::kI32; break;
    default: TORCH_CHECK_TYPE(false, op, " (cpu): unsupported out_dtype ", out_dtype);
  }
  if (e.kind == OutKind::kI8) {
    TORCH_CHECK_VALUE(out_scale.has_value() && out_scale->defined(), op, " (cpu): out_dtype int8 needs out_scale");
    e.out_scale = *small_vector(*out_scale, 1, op, "out_scale").data_ptr<float>();
  }
  keep.push_back(small_vector(w_scale, N, op, "w_scale"));
  e.w_scale = keep.back().data_ptr<float>();
  if (bias.has_value() && bias->defined()) {
    keep.push_back(small_vector(*bias, N, op, "bias"));
    e.bias = keep.back().data_ptr<float>();
  }
  e.act = static_cast<int>(activation);
  e.slope = static_cast<float>(negative_slope);
  at::Tensor y = at::empty({g.M, N}, opts.dtype(out_dtype));
  e.out = y.data_ptr();
  return y;
}

void set_int8_a(GemmArgs& g, const at::Tensor& xq, const at::Tensor& x_scale, std::vector<at::Tensor>& keep,
                const char* op) {
  check_2d(xq, op, "xq");
  TORCH_CHECK_TYPE(xq.scalar_type() == at::kChar, op, " (cpu): xq must be int8, got ", xq.scalar_type());
  g.M = xq.size(0), g.K = xq.size(1);
  g.x = xq.data_ptr<int8_t>(), g.rs = xq.stride(0), g.cs = xq.stride(1);
  TORCH_CHECK_VALUE(x_scale.numel() == g.M || x_scale.numel() == 1, op, " (cpu): x_scale must have M or 1 elements");
  keep.push_back(small_vector(x_scale, x_scale.numel(), op, "x_scale"));
  g.e.x_scale = keep.back().data_ptr<float>();
  g.e.per_row_scale = keep.back().numel() == g.M;
}

void set_float_a(GemmArgs& g, FloatA& f, const at::Tensor& x, const char* op) {
  check_2d(x, op, "x");
  f.x = x.data_ptr(), f.rs = x.stride(0), f.cs = x.stride(1);
  f.dt = in_type(x, op);
  f.quantize_rows = quantizer();
  g.M = x.size(0), g.K = x.size(1);
  g.fx = &f;
}

void run(GemmArgs& g, FloatA* f, const std::function<int64_t(const GemmArgs&)>& gemm, const char* op) {
  if (g.M == 0) return;
  if (f == nullptr) {
    if (g.N > 0) gemm(g);
    return;
  }
  // The per-token scales live for this call only: the calling thread's scratch.
  f->scale = static_cast<float*>(ThreadScratch::get(g.M * int64_t{sizeof(float)}, ThreadScratch::kScales));
  g.e.x_scale = f->scale;
  g.e.per_row_scale = true;
  int64_t bad = -1;
  if (g.N > 0) {
    bad = gemm(g);
  } else {  // no GEMM, but NaN / Inf still raise, as in quantize_per_token
    std::vector<int8_t> q(static_cast<size_t>(g.M * g.K));
    QuantArgs a;
    a.M = g.M, a.K = g.K, a.x = f->x, a.rs = f->rs, a.cs = f->cs, a.dt = f->dt;
    a.q = q.data(), a.scale = f->scale;
    quantize(a, op);
  }
  if (bad >= 0) raise_non_finite(op, bad);
}

namespace {

// The packed dense weight into g.w (its header checked against [g.N, g.K]).
void weight_args(GemmArgs& g, const char* op, const at::Tensor& w_packed) {
  const int64_t N = g.N, K = g.K;
  TORCH_CHECK_VALUE(w_packed.device().is_cpu() && w_packed.dim() == 1 && w_packed.is_contiguous() &&
                        (w_packed.scalar_type() == at::kByte || w_packed.scalar_type() == at::kChar),
                    op, " (cpu): w_packed must be the 1-D uint8 blob of int8_pack_weight, got ",
                    w_packed.scalar_type(), " ", w_packed.sizes());
  const uint8_t* blob = static_cast<const uint8_t*>(w_packed.data_ptr());
  PackedHeader h{};
  const char* why = check_packed(blob, w_packed.numel(), N, K, &h);
  if (*why) {
    PackedHeader seen{};
    if (w_packed.numel() >= 64) std::memcpy(&seen, blob, sizeof(seen));
    TORCH_CHECK_VALUE(false, op, " (cpu): w_packed does not match the layer: ", why, " (expected a weight [", N, ", ",
                      K, "]",
                      seen.magic == kPackedMagic ? ", the blob says [" + std::to_string(seen.n) + ", " +
                                                       std::to_string(seen.k) + "]"
                                                 : std::string(),
                      "); repack it with int8_pack_weight");
  }
  g.w = packed_view(blob, h);
}

at::Tensor int8_linear_fwd(const at::Tensor& xq, const at::Tensor& x_scale, const at::Tensor& w_packed,
                           const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, int64_t out_features,
                           int64_t activation, double negative_slope, at::ScalarType out_dtype,
                           const std::optional<at::Tensor>& out_scale) {
  const char* op = "int8_linear_fwd";
  GemmArgs g;
  std::vector<at::Tensor> keep;
  set_int8_a(g, xq, x_scale, keep, op);
  g.N = out_features;
  weight_args(g, op, w_packed);
  at::Tensor y =
      epilogue_args(g, keep, op, xq.options(), w_scale, bias, activation, negative_slope, out_dtype, out_scale);
  run(g, nullptr, &run_gemm, op);
  return y;
}

at::Tensor int8_linear_dynamic_fwd(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                                   const std::optional<at::Tensor>& bias, int64_t out_features, int64_t activation,
                                   double negative_slope, at::ScalarType out_dtype,
                                   const std::optional<at::Tensor>& out_scale) {
  const char* op = "int8_linear_dynamic_fwd";
  GemmArgs g;
  FloatA f;
  set_float_a(g, f, x, op);
  g.N = out_features;
  weight_args(g, op, w_packed);
  std::vector<at::Tensor> keep;
  at::Tensor y =
      epilogue_args(g, keep, op, x.options(), w_scale, bias, activation, negative_slope, out_dtype, out_scale);
  run(g, &f, &run_gemm, op);
  return y;
}

std::string int8_linear_cpu_path() { return path_name(select_path()); }

}  // namespace
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

TORCH_LIBRARY_FRAGMENT(fastgan_ext, m) {
  m.def("int8_linear_cpu_path() -> str", &fastgan::cpu::int8::int8_linear_cpu_path);  // tests only
}

TORCH_LIBRARY_IMPL(fastgan_ext, CPU, m) {
  m.impl("quantize_per_token", &fastgan::cpu::int8::quantize_per_token);
  m.impl("quantize_per_tensor", &fastgan::cpu::int8::quantize_per_tensor);
  m.impl("int8_pack_weight", &fastgan::cpu::int8::int8_pack_weight);
  m.impl("int8_linear_fwd", &fastgan::cpu::int8::int8_linear_fwd);
  m.impl("int8_linear_dynamic_fwd", &fastgan::cpu::int8::int8_linear_dynamic_fwd);
}

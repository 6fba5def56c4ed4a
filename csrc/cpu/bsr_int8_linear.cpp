// CPU kernels of the block-sparse int8 ops of fastgan_ext (schemas in csrc/ops.cpp):
//
//   bsr_int8_pack_weight(values, row_ptr, col_idx, N, K)   the packed blob (int8/bsr_packed.h)
//   bsr_int8_linear_fwd(xq, x_scale, blob, row_ptr, col_idx, ...)   int8 A with its scales
//   bsr_int8_linear_dynamic_fwd(x, blob, row_ptr, col_idx, ...)     float A, quantised per
//       token while the GEMM packs it (bit for bit quantize_per_token + bsr_int8_linear_fwd)
//
// The A operand, the epilogue's tensors and the output are the dense int8 kernels'
// (int8/aten_args.h), so both kinds of layer compute the same epilogue.
//
// Paths, best first (isa_level(), lowered by the test cap fastgan_ext::set_cpu_isa):
// AVX512-VNNI (bsr_int8_vnni.cpp; also taken on AMX machines, which have VNNI: there is no
// AMX block-sparse int8 kernel yet) > AVX2 (the same driver with vpmaddubsw tiles, for CPUs
// without AVX-512) > portable (bsr_int8_portable.cpp).
//
// Test-only ops, defined here as a fragment of the library: bsr_int8_linear_cpu_path(), and
// set_bsr_int8_vnni_emulation(on): the VNNI path's driver (packing, split, walk, indexing) with
// scalar tiles, so it is tested on machines without AVX512-VNNI.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_features.h"
#include "int8/aten_args.h"
#include "int8/bsr_packed.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

enum class BsrPath { kPortable, kAvx2, kAvx512Vnni, kVnniEmulated };

// Test-only (set_bsr_int8_vnni_emulation): the VNNI path's driver with scalar tiles, on any machine.
std::atomic<bool> vnni_emulation{false};

BsrPath bsr_path() {
  if (vnni_emulation.load(std::memory_order_relaxed)) return BsrPath::kVnniEmulated;
  if (isa_level() >= kAvx512Vnni && features().avx512_vnni) return BsrPath::kAvx512Vnni;
  return isa_level() >= kAvx2 ? BsrPath::kAvx2 : BsrPath::kPortable;
}

bool set_bsr_int8_vnni_emulation(bool on) { return vnni_emulation.exchange(on); }

const int32_t* index(const at::Tensor& t, const char* op, const char* name, int64_t size) {
  TORCH_CHECK_VALUE(t.dim() == 1 && t.scalar_type() == at::kInt && t.is_contiguous() && t.device().is_cpu(), op,
                    " (cpu): ", name, " must be a contiguous 1-D int32 CPU tensor");
  TORCH_CHECK_VALUE(t.size(0) == size, op, " (cpu): ", name, " must have ", size, " entries, got ", t.size(0));
  return t.data_ptr<int32_t>();
}

// The BSR index, checked so that no kernel can read out of bounds: O(nbr + nnz).
void set_index(BsrWeightView& w, const at::Tensor& row_ptr, const at::Tensor& col_idx, const char* op) {
  w.row_ptr = index(row_ptr, op, "row_ptr", w.nbr + 1);
  w.col_idx = index(col_idx, op, "col_idx", w.nnz);
  TORCH_CHECK_VALUE(w.row_ptr[0] == 0 && w.row_ptr[w.nbr] == w.nnz, op, " (cpu): row_ptr must run from 0 to ", w.nnz);
  for (int64_t r = 0; r < w.nbr; ++r)
    TORCH_CHECK_VALUE(w.row_ptr[r] <= w.row_ptr[r + 1], op, " (cpu): row_ptr must not decrease");
  for (int64_t j = 0; j < w.nnz; ++j)
    TORCH_CHECK_VALUE(w.col_idx[j] >= 0 && w.col_idx[j] < w.nbc, op, " (cpu): col_idx entries must be in [0, ",
                      w.nbc, ")");
}

at::Tensor bsr_int8_pack_weight(const at::Tensor& values, const at::Tensor& row_ptr, const at::Tensor& col_idx,
                                int64_t out_features, int64_t in_features) {
  const char* op = "bsr_int8_pack_weight";
  TORCH_CHECK_VALUE(values.dim() == 3 && values.device().is_cpu(), op, " (cpu): values must be a 3-D CPU tensor");
  TORCH_CHECK_TYPE(values.scalar_type() == at::kChar, op, " (cpu): values must be int8, got ", values.scalar_type());
  const int64_t bn = values.size(1), bk = values.size(2);
  TORCH_CHECK_VALUE(bn >= kPanel && bn % kPanel == 0 && bk >= kGroup && bk % kGroup == 0, op,
                    " (cpu): blocks must be multiples of 16 rows and 4 columns, got ", bn, " x ", bk);
  TORCH_CHECK_VALUE(out_features > 0 && in_features > 0, op, " (cpu): out_features and in_features must be > 0");
  BsrWeightView w;
  w.bn = bn, w.bk = bk, w.nbr = ceil_div(out_features, bn), w.nbc = ceil_div(in_features, bk), w.nnz = values.size(0);
  set_index(w, row_ptr, col_idx, op);
  const at::Tensor v = values.contiguous();
  const BsrPackedHeader h = bsr_packed_layout(out_features, in_features, bn, bk, w.nnz);
  at::Tensor blob = at::empty({h.total_bytes}, values.options().dtype(at::kByte));
  uint8_t* out = blob.data_ptr<uint8_t>();
  std::memset(out, 0, 64);
  std::memcpy(out, &h, sizeof(h));
  const int8_t* src = v.data_ptr<int8_t>();
  parallel_for(0, w.nbr, 1, [&](int64_t b, int64_t e) { bsr_pack_rows(src, w.row_ptr, h, out, b, e); });
  return blob;
}

// The blob (header checked against the layer) and the index into p.w.
void weight_args(BsrGemmArgs& p, const char* op, const at::Tensor& w_packed, const at::Tensor& row_ptr,
                 const at::Tensor& col_idx) {
  TORCH_CHECK_VALUE(w_packed.device().is_cpu() && w_packed.dim() == 1 && w_packed.is_contiguous() &&
                        w_packed.scalar_type() == at::kByte && w_packed.numel() >= 64,
                    op, " (cpu): w_packed must be the 1-D uint8 blob of bsr_int8_pack_weight");
  const uint8_t* blob = w_packed.data_ptr<uint8_t>();
  BsrPackedHeader h;
  std::memcpy(&h, blob, sizeof(h));
  TORCH_CHECK_VALUE(h.magic == kBsrPackedMagic && h.version == kBsrPackedVersion, op,
                    " (cpu): w_packed is not a block-sparse int8 blob of this version; repack it with "
                    "bsr_int8_pack_weight");
  const BsrPackedHeader want = bsr_packed_layout(h.n, h.k, h.bn, h.bk, h.nnz);
  TORCH_CHECK_VALUE(h.bn >= kPanel && h.bn % kPanel == 0 && h.bk >= kGroup && h.bk % kGroup == 0 &&
                        h.total_bytes == want.total_bytes && h.data_offset == want.data_offset &&
                        h.total_bytes == w_packed.numel(),
                    op, " (cpu): w_packed's header is inconsistent with its size");
  TORCH_CHECK_VALUE(h.n == p.g.N && h.k == p.g.K, op, " (cpu): w_packed was packed for a weight [", h.n, ", ", h.k,
                    "], the layer is [", p.g.N, ", ", p.g.K, "]; repack it with bsr_int8_pack_weight");
  BsrWeightView& w = p.w;
  w.bn = h.bn, w.bk = h.bk, w.nbr = ceil_div(h.n, h.bn), w.nbc = ceil_div(h.k, h.bk), w.nnz = h.nnz;
  set_index(w, row_ptr, col_idx, op);
  w.comp = reinterpret_cast<const int32_t*>(blob + h.comp_offset);
  w.data = reinterpret_cast<const int8_t*>(blob + h.data_offset);
}

int64_t run_bsr_gemm(const BsrGemmArgs& p) {
  switch (bsr_path()) {
    case BsrPath::kAvx512Vnni: return bsr_gemm_vnni(p);
    case BsrPath::kVnniEmulated: return bsr_gemm_vnni_emulated(p);
    case BsrPath::kAvx2: return bsr_gemm_avx2(p);
    default: return bsr_gemm_portable(p);
  }
}

at::Tensor finish(BsrGemmArgs& p, FloatA* f, std::vector<at::Tensor>& keep, const char* op,
                  const at::TensorOptions& opts, const at::Tensor& w_packed, const at::Tensor& row_ptr,
                  const at::Tensor& col_idx, const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                  int64_t out_features, int64_t activation, double negative_slope, at::ScalarType out_dtype,
                  const std::optional<at::Tensor>& out_scale) {
  p.g.N = out_features;
  weight_args(p, op, w_packed, row_ptr, col_idx);
  at::Tensor y = epilogue_args(p.g, keep, op, opts, w_scale, bias, activation, negative_slope, out_dtype, out_scale);
  // p.g is the GemmArgs inside p: the kernel gets p back from it.
  run(p.g, f, [&p](const GemmArgs&) { return run_bsr_gemm(p); }, op);
  return y;
}

at::Tensor bsr_int8_linear_fwd(const at::Tensor& xq, const at::Tensor& x_scale, const at::Tensor& w_packed,
                               const at::Tensor& row_ptr, const at::Tensor& col_idx, const at::Tensor& w_scale,
                               const std::optional<at::Tensor>& bias, int64_t out_features, int64_t activation,
                               double negative_slope, at::ScalarType out_dtype,
                               const std::optional<at::Tensor>& out_scale) {
  const char* op = "bsr_int8_linear_fwd";
  BsrGemmArgs p;
  std::vector<at::Tensor> keep;
  set_int8_a(p.g, xq, x_scale, keep, op);
  return finish(p, nullptr, keep, op, xq.options(), w_packed, row_ptr, col_idx, w_scale, bias, out_features,
                activation, negative_slope, out_dtype, out_scale);
}

at::Tensor bsr_int8_linear_dynamic_fwd(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& row_ptr,
                                       const at::Tensor& col_idx, const at::Tensor& w_scale,
                                       const std::optional<at::Tensor>& bias, int64_t out_features,
                                       int64_t activation, double negative_slope, at::ScalarType out_dtype,
                                       const std::optional<at::Tensor>& out_scale) {
  const char* op = "bsr_int8_linear_dynamic_fwd";
  BsrGemmArgs p;
  FloatA f;
  std::vector<at::Tensor> keep;
  set_float_a(p.g, f, x, op);
  return finish(p, &f, keep, op, x.options(), w_packed, row_ptr, col_idx, w_scale, bias, out_features, activation,
                negative_slope, out_dtype, out_scale);
}

std::string bsr_int8_linear_cpu_path() {
  switch (bsr_path()) {
    case BsrPath::kAvx512Vnni: return "avx512_vnni";
    case BsrPath::kVnniEmulated: return "avx512_vnni_emulated";
    case BsrPath::kAvx2: return "avx2";
    default: return "portable";
  }
}

}  // namespace
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

TORCH_LIBRARY_FRAGMENT(fastgan_ext, m) {
  m.def("bsr_int8_linear_cpu_path() -> str", &fastgan::cpu::int8::bsr_int8_linear_cpu_path);  // tests only
  m.def("set_bsr_int8_vnni_emulation(bool on) -> bool",
        &fastgan::cpu::int8::set_bsr_int8_vnni_emulation);  // tests only
}

TORCH_LIBRARY_IMPL(fastgan_ext, CPU, m) {
  m.impl("bsr_int8_pack_weight", &fastgan::cpu::int8::bsr_int8_pack_weight);
  m.impl("bsr_int8_linear_fwd", &fastgan::cpu::int8::bsr_int8_linear_fwd);
  m.impl("bsr_int8_linear_dynamic_fwd", &fastgan::cpu::int8::bsr_int8_linear_dynamic_fwd);
}

// CPU kernels of fastgan_ext::mlp_chain / mlp_chain_out (schemas in csrc/ops.cpp): a chain of
// linear layers in one call. This file reads the flat description the Python side packs once
// (fastgan_kernels/deploy/plan.py) into chain::Layer records, checks what would otherwise
// corrupt memory, and hands them to chain::run (chain/schedule.cpp).
//
// The description, per layer l (kMetaPer ints, kScalarPer floats, kTensorsPer tensors):
//   meta     [format, N, K, activation, output store, 0]   (chain::Format, chain::Store codes)
//   scalars  [negative_slope, input scale (static int8), output scale (int8 output)]
//   tensors  dense:  [weight [N, K] (fp32 | bf16), bias, -, -]
//            int8:   [packed blob (int8_pack_weight), w_scale [N], bias, -]
//            bsr:    [values [nnz, bn, bk], row_ptr, col_idx, bias]
// An unused slot or an absent bias is an empty tensor. The last layer stores fp32.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <string>

#include "chain/chain.h"
#include "int8/packed_weight.h"

namespace fastgan {
namespace cpu {
namespace chain {
namespace {

constexpr int kMetaPer = 6, kScalarPer = 3, kTensorsPer = 4, kMaxLayers = 64;
using Layers = std::array<Layer, kMaxLayers>;

#define CHAIN_CHECK(cond, ...) TORCH_CHECK_VALUE(cond, "mlp_chain (cpu): layer ", l, ": ", __VA_ARGS__)

void check_cpu(const at::Tensor& t, int l, const char* what, at::ScalarType dt, int64_t dim) {
  CHAIN_CHECK(t.defined() && t.device().is_cpu() && t.scalar_type() == dt && t.dim() == dim && t.is_contiguous(),
              what, " must be a contiguous ", dim, "-D ", dt, " CPU tensor, got ",
              t.defined() ? std::string(c10::toString(t.scalar_type())) : std::string("None"));
}

const float* optional_vector(const at::Tensor& t, int l, const char* what, int64_t n) {
  if (!t.defined() || t.numel() == 0) return nullptr;
  check_cpu(t, l, what, at::kFloat, 1);
  CHAIN_CHECK(t.size(0) == n, what, " must have ", n, " elements, got ", t.size(0));
  return t.data_ptr<float>();
}

void parse_dense(Layer& L, const at::Tensor* t, int l) {
  const at::ScalarType dt = L.format == Format::kDenseBF16 ? at::kBFloat16 : at::kFloat;
  check_cpu(t[0], l, "weight", dt, 2);
  CHAIN_CHECK(t[0].size(0) == L.N && t[0].size(1) == L.K, "weight must be [", L.N, ", ", L.K, "], got ", t[0].sizes());
  L.weight = t[0].data_ptr();
  L.bias = optional_vector(t[1], l, "bias", L.N);
}

void parse_int8(Layer& L, const at::Tensor* t, int l) {
  check_cpu(t[0], l, "packed weight", at::kByte, 1);
  int8::PackedHeader h;
  const char* why = int8::check_packed(t[0].data_ptr<uint8_t>(), t[0].numel(), L.N, L.K, &h);
  CHAIN_CHECK(*why == 0, "the packed weight does not match [", L.N, ", ", L.K, "]: ", why);
  L.blob = t[0].data_ptr<uint8_t>();
  L.w_scale = optional_vector(t[1], l, "w_scale", L.N);
  CHAIN_CHECK(L.w_scale != nullptr, "w_scale is missing");
  L.bias = optional_vector(t[2], l, "bias", L.N);
}

void parse_bsr(Layer& L, const at::Tensor* t, int l) {
  check_cpu(t[0], l, "values", at::kFloat, 3);
  L.nnz = t[0].size(0), L.bn = t[0].size(1), L.bk = t[0].size(2);
  for (int64_t b : {L.bn, L.bk})
    CHAIN_CHECK(b >= 16 && b <= 256 && (b & (b - 1)) == 0, "block sizes must be powers of two in [16, 256], got ",
                t[0].sizes());
  const int64_t nbr = (L.N + L.bn - 1) / L.bn, nbc = (L.K + L.bk - 1) / L.bk;
  check_cpu(t[1], l, "row_ptr", at::kInt, 1);
  check_cpu(t[2], l, "col_idx", at::kInt, 1);
  CHAIN_CHECK(t[1].size(0) == nbr + 1 && t[2].size(0) == L.nnz, "row_ptr must have ", nbr + 1,
              " entries and col_idx ", L.nnz);
  const int32_t* ptr = t[1].data_ptr<int32_t>();
  const int32_t* idx = t[2].data_ptr<int32_t>();
  CHAIN_CHECK(ptr[0] == 0 && ptr[nbr] == L.nnz, "row_ptr must run from 0 to ", L.nnz);
  for (int64_t r = 0; r < nbr; ++r) CHAIN_CHECK(ptr[r] <= ptr[r + 1], "row_ptr must not decrease");
  for (int64_t j = 0; j < L.nnz; ++j) CHAIN_CHECK(idx[j] >= 0 && idx[j] < nbc, "col_idx out of [0, ", nbc, ")");
  L.values = t[0].data_ptr(), L.row_ptr = ptr, L.col_idx = idx;
  L.bias = optional_vector(t[3], l, "bias", L.N);
}

// The chain described by (tensors, meta, scalars) for an input of `k0` features.
int parse(at::TensorList tensors, at::IntArrayRef meta, at::ArrayRef<double> scalars, int64_t k0, Layers& layers) {
  const int64_t count = static_cast<int64_t>(meta.size()) / kMetaPer;
  TORCH_CHECK_VALUE(count >= 1 && count <= kMaxLayers && static_cast<int64_t>(meta.size()) == count * kMetaPer &&
                        static_cast<int64_t>(scalars.size()) == count * kScalarPer &&
                        static_cast<int64_t>(tensors.size()) == count * kTensorsPer,
                    "mlp_chain (cpu): the chain description must hold 1 to ", kMaxLayers, " layers of ", kMetaPer,
                    " ints, ", kScalarPer, " floats and ", kTensorsPer, " tensors; got ", meta.size(), ", ",
                    scalars.size(), ", ", tensors.size());
  Store in_store = Store::kF32;
  for (int l = 0; l < count; ++l) {
    const int64_t* m = meta.data() + l * kMetaPer;
    const double* s = scalars.data() + l * kScalarPer;
    Layer& L = layers[l];
    L = Layer();
    CHAIN_CHECK(m[0] >= 0 && m[0] < kFormatCount, "unknown format code ", m[0]);
    L.format = static_cast<Format>(m[0]);
    L.N = m[1], L.K = m[2], L.act = static_cast<int>(m[3]);
    CHAIN_CHECK(L.N > 0 && L.K == k0, "expected ", k0, " input features and a positive output width, got [", L.N,
                ", ", L.K, "]");
    CHAIN_CHECK(activation_supported(L.act), "unsupported activation code ", L.act);
    CHAIN_CHECK(m[4] >= 0 && m[4] <= 2, "unknown output store code ", m[4]);
    L.out = static_cast<Store>(m[4]);
    L.slope = static_cast<float>(s[0]), L.in_scale = static_cast<float>(s[1]), L.out_scale = static_cast<float>(s[2]);
    const bool is_int8 = L.format == Format::kInt8Dynamic || L.format == Format::kInt8Static;
    CHAIN_CHECK(L.out != Store::kI8 || (is_int8 && L.out_scale > 0.f && std::isfinite(L.out_scale)),
                "only int8 layers store int8, with a positive finite output scale");
    CHAIN_CHECK(l + 1 < count || L.out == Store::kF32, "the last layer must store float32");
    CHAIN_CHECK((in_store != Store::kI8 && L.format != Format::kInt8Static) ||
                    (is_int8 && L.in_scale > 0.f && std::isfinite(L.in_scale)),
                "an int8 input (or a static int8 layer) needs an int8 layer with a positive finite input scale");
    const at::Tensor* t = tensors.data() + l * kTensorsPer;
    if (L.format == Format::kDenseF32 || L.format == Format::kDenseBF16) parse_dense(L, t, l);
    else if (is_int8) parse_int8(L, t, l);
    else parse_bsr(L, t, l);
    in_store = L.out;
    k0 = L.N;
  }
  return static_cast<int>(count);
}

#undef CHAIN_CHECK

Schedule schedule_of(int64_t code) {
  TORCH_CHECK_VALUE(code >= 0 && code <= 2, "mlp_chain (cpu): schedule must be 0 (auto), 1 (columns) or 2 (rows)");
  return static_cast<Schedule>(code);
}

void run_into(const at::Tensor& x, at::TensorList tensors, at::IntArrayRef meta, at::ArrayRef<double> scalars,
              int64_t schedule, const at::Tensor& y) {
  TORCH_CHECK_VALUE(x.dim() == 2 && x.device().is_cpu() && x.scalar_type() == at::kFloat,
                    "mlp_chain (cpu): x must be a 2-D float32 CPU tensor, got ", x.scalar_type(), " ", x.sizes());
  Layers layers;
  const int count = parse(tensors, meta, scalars, x.size(1), layers);
  const int64_t M = x.size(0), N = layers[count - 1].N;
  TORCH_CHECK_VALUE(y.device().is_cpu() && y.scalar_type() == at::kFloat && y.is_contiguous() && y.dim() == 2 &&
                        y.size(0) == M && y.size(1) == N,
                    "mlp_chain (cpu): out must be a contiguous float32 CPU tensor [", M, ", ", N, "], got ",
                    y.scalar_type(), " ", y.sizes());
  Act in;
  in.data = x.data_ptr(), in.rs = x.stride(0), in.cs = x.stride(1), in.kind = Store::kF32;
  const Error e = run(layers.data(), count, in, M, y.data_ptr<float>(), schedule_of(schedule));
  TORCH_CHECK_VALUE(e.layer < 0, "mlp_chain: the input of layer ", e.layer, " has NaN or Inf (first in row ", e.row,
                    "); int8 quantisation would lose it");
}

at::Tensor mlp_chain(const at::Tensor& x, at::TensorList tensors, at::IntArrayRef meta, at::ArrayRef<double> scalars,
                     int64_t schedule) {
  const int64_t count = static_cast<int64_t>(meta.size()) / kMetaPer;
  TORCH_CHECK_VALUE(count >= 1 && x.dim() == 2, "mlp_chain (cpu): x must be 2-D and the chain non-empty");
  at::Tensor y = at::empty({x.size(0), meta[(count - 1) * kMetaPer + 1]}, x.options().dtype(at::kFloat));
  run_into(x, tensors, meta, scalars, schedule, y);
  return y;
}

void mlp_chain_out(const at::Tensor& x, at::TensorList tensors, at::IntArrayRef meta, at::ArrayRef<double> scalars,
                   int64_t schedule, const at::Tensor& out) {
  run_into(x, tensors, meta, scalars, schedule, out);
}

// Test-only: the schedule the chain takes for M rows on the current thread count.
std::string mlp_chain_schedule(at::TensorList tensors, at::IntArrayRef meta, at::ArrayRef<double> scalars, int64_t M,
                               int64_t schedule) {
  Layers layers;
  TORCH_CHECK_VALUE(!meta.empty() && meta.size() % kMetaPer == 0, "mlp_chain_schedule: bad description");
  const int count = parse(tensors, meta, scalars, meta[2], layers);
  const Schedule s = choose_schedule(layers.data(), count, M, at::get_num_threads(), schedule_of(schedule));
  return s == Schedule::kRows ? "rows" : "columns";
}

}  // namespace
}  // namespace chain
}  // namespace cpu
}  // namespace fastgan

TORCH_LIBRARY_FRAGMENT(fastgan_ext, m) {
  m.def("mlp_chain_schedule(Tensor[] tensors, int[] meta, float[] scalars, int M, int schedule) -> str",
        &fastgan::cpu::chain::mlp_chain_schedule);  // tests only
}

TORCH_LIBRARY_IMPL(fastgan_ext, CPU, m) {
  m.impl("mlp_chain", &fastgan::cpu::chain::mlp_chain);
  m.impl("mlp_chain_out", &fastgan::cpu::chain::mlp_chain_out);
}

// One slice of one chain layer, in the layer's own format, on the calling thread (see
// chain.h). Everything here reuses the per-op kernels' building blocks; the parallel
// region around it (schedule.cpp) makes their own parallel_for calls run inline.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "../activation.h"
#include "../bsr/problem.h"
#include "../cpu_features.h"
#include "../gemm/gemm.h"
#include "../gemm/tile.h"
#include "../int8/int8.h"
#include "../int8/packed_weight.h"
#include "chain.h"

namespace fastgan {
namespace cpu {
namespace chain {
namespace {

gemm::DType gemm_dtype(Store s) { return s == Store::kBF16 ? gemm::DType::kBF16 : gemm::DType::kF32; }
int8::InType in_type(Store s) { return s == Store::kBF16 ? int8::InType::kBF16 : int8::InType::kF32; }
int8::OutKind out_kind(Store s) {
  return s == Store::kI8 ? int8::OutKind::kI8 : s == Store::kBF16 ? int8::OutKind::kBF16 : int8::OutKind::kF32;
}

// act(bias) in every row: a slice of a block-sparse layer whose blocks were all pruned.
void fill_activated_bias(const Layer& L, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  const int sz = store_size(out.kind);
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t n = n0; n < n1; ++n) {
      const float v = act_ref(L.act, L.bias ? L.bias[n] : 0.f, L.slope);
      gemm::store_scalar(static_cast<char*>(out.data) + (m * out.ld + n) * sz, gemm_dtype(out.kind), v);
    }
}

int64_t dense_slice(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  const gemm::DType wdt = L.format == Format::kDenseBF16 ? gemm::DType::kBF16 : gemm::DType::kF32;
  gemm::Problem p;
  p.M = rows, p.N = n1 - n0, p.K = L.K;
  p.a.data = in.data, p.a.rs = in.rs, p.a.cs = in.cs, p.a.dtype = gemm_dtype(in.kind);
  // B[k, n] = W[n0 + n, k]: W's rows are B's columns.
  p.b.data = static_cast<const char*>(L.weight) + n0 * L.K * gemm::dtype_size(wdt);
  p.b.rs = 1, p.b.cs = L.K, p.b.dtype = wdt;
  p.bias = L.bias ? L.bias + n0 : nullptr;
  p.act = L.act, p.slope = L.slope;
  p.c = static_cast<char*>(out.data) + n0 * store_size(out.kind);
  p.ldc = out.ld, p.c_dtype = gemm_dtype(out.kind);
  gemm::run(p);
  return -1;
}

int64_t int8_slice(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  int8::PackedHeader h;
  std::memcpy(&h, L.blob, sizeof(h));
  int8::GemmArgs g;
  g.M = rows, g.N = n1 - n0, g.K = L.K;
  // The slice starts at panel n0 / 16 (column_unit()): its panels, compensation sums, scales.
  const int64_t p0 = n0 / int8::kPanel;
  g.w = int8::packed_view(L.blob, h);
  g.w.n = g.N;
  g.w.panels = int8::ceil_div(g.N, int8::kPanel);
  g.w.comp += p0 * int8::kPanel;
  g.w.data += p0 * g.w.panel_bytes();
  int8::Epilogue& e = g.e;
  e.w_scale = L.w_scale + n0;
  e.bias = L.bias ? L.bias + n0 : nullptr;
  e.act = L.act, e.slope = L.slope;
  e.kind = out_kind(out.kind), e.out_scale = L.out_scale;
  e.out = static_cast<char*>(out.data) + n0 * store_size(out.kind);
  e.ldo = out.ld;
  int8::FloatA f;
  if (in.kind == Store::kI8) {
    g.x = static_cast<const int8_t*>(in.data), g.rs = in.rs, g.cs = in.cs;
    e.x_scale = &L.in_scale, e.per_row_scale = false;
  } else {  // dynamic: quantised per token while the GEMM packs it; the scales are this thread's
    f.x = in.data, f.rs = in.rs, f.cs = in.cs, f.dt = in_type(in.kind);
    f.quantize_rows = int8::quantizer();
    f.scale = static_cast<float*>(thread_buffer(kSlotScales, rows * int64_t{sizeof(float)}));
    g.fx = &f;
    e.x_scale = f.scale, e.per_row_scale = true;
  }
  return int8::run_gemm(g);
}

int64_t bsr_slice(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  const int64_t r0 = n0 / L.bn, r1 = (n1 + L.bn - 1) / L.bn;
  bsr::Forward p;
  bsr::Structure& w = p.w;
  w.N = n1 - n0, w.K = L.K, w.bn = L.bn, w.bk = L.bk;
  w.nbr = r1 - r0, w.nbc = (L.K + L.bk - 1) / L.bk;
  w.row_ptr = L.row_ptr + r0;  // absolute offsets into col_idx / values: no rebasing needed
  w.nnz = L.row_ptr[r1] - L.row_ptr[r0];
  w.col_idx = L.col_idx, w.values = L.values, w.vdtype = gemm::DType::kF32;
  if (w.nnz == 0) {
    fill_activated_bias(L, out, rows, n0, n1);
    return -1;
  }
  p.M = rows;
  p.x.data = in.data, p.x.rs = in.rs, p.x.cs = in.cs, p.x.dtype = gemm_dtype(in.kind);
  p.bias = L.bias ? L.bias + n0 : nullptr;
  p.act = L.act, p.slope = L.slope;
  // The BSR kernels write a contiguous [rows, N] output: a slice goes through this thread's
  // buffer and is copied into place (rows x slice elements, small next to the product).
  const int64_t cols = n1 - n0, sz = store_size(out.kind);
  const bool direct = n0 == 0 && cols == out.ld;
  p.y = direct ? out.data : thread_buffer(kSlotBsrOut, rows * cols * sz);
  p.ydtype = gemm_dtype(out.kind);
  if (isa_level() >= kAvx512) bsr::forward_avx512_f32(p);
  else if (isa_level() >= kAvx2) bsr::forward_avx2_f32(p);
  else bsr::forward_portable(p);
  if (!direct)
    for (int64_t m = 0; m < rows; ++m)
      std::memcpy(static_cast<char*>(out.data) + (m * out.ld + n0) * sz, static_cast<const char*>(p.y) + m * cols * sz,
                  static_cast<size_t>(cols * sz));
  return -1;
}

struct Buffer {
  void* ptr = nullptr;
  int64_t bytes = 0;
  ~Buffer() { std::free(ptr); }
};

}  // namespace

void* thread_buffer(int slot, int64_t bytes) {
  static thread_local Buffer buffers[kSlotCount];
  Buffer& b = buffers[slot];
  if (bytes > b.bytes) {
    std::free(b.ptr);
    b.bytes = gemm::round_up(std::max<int64_t>(bytes, 4096), 4096);
    b.ptr = std::aligned_alloc(64, static_cast<size_t>(b.bytes));
    if (b.ptr == nullptr) {
      b.bytes = 0;
      throw std::bad_alloc();
    }
  }
  return b.ptr;
}

int64_t Layer::column_unit() const { return format == Format::kBsrF32 ? bn : 16; }

int64_t Layer::weight_bytes() const {
  switch (format) {
    case Format::kDenseF32: return N * K * 4;
    case Format::kDenseBF16: return N * K * 2;
    case Format::kBsrF32: return nnz * bn * bk * 4;
    default: return N * K;
  }
}

int64_t run_layer_slice(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  if (rows <= 0 || n0 >= n1) return -1;
  switch (L.format) {
    case Format::kDenseF32:
      if (isa_level() == kAvx2 && small_batch_dense_applies(L, in, out, rows)) {
        small_batch_dense(L, in, out, rows, n0, n1);
        return -1;
      }
      return dense_slice(L, in, out, rows, n0, n1);
    case Format::kDenseBF16: return dense_slice(L, in, out, rows, n0, n1);
    case Format::kInt8Dynamic:
    case Format::kInt8Static:
      return int8_slice(L, in, out, rows, n0, n1);
    case Format::kBsrF32: return bsr_slice(L, in, out, rows, n0, n1);
  }
  return -1;
}

int64_t quantize_rows_static(const Act& in, int64_t K, float scale, int8_t* q, int64_t r0, int64_t r1) {
  if (r0 >= r1) return -1;
  int8::QuantArgs a;
  a.M = r1, a.K = K;
  a.x = in.data, a.rs = in.rs, a.cs = in.cs, a.dt = in_type(in.kind);
  a.q = q, a.tensor_scale = scale;
  return int8::quantizer()(a, r0, r1);
}

}  // namespace chain
}  // namespace cpu
}  // namespace fastgan

// Scalar packers: any strides, any input dtype, optional prologue. The portable path
// uses them for everything; the vector paths fall back to them for operands whose
// strides fit none of their fast cases (slices with steps, broadcast zero strides).
//
// A packer copies one micro-panel: `lanes` valid lanes (rows of A or columns of B, the
// rest up to P are zero) by kc valid k (zero up to kcp, the k block rounded up to the
// kernel's k unit), converting to the kernel's element type. Where the element lands is
// the layout's business:
//   PanelF32    fp32, dst[k * P + l]                         (FMA micro-kernels)
//   PairsBF16   bf16 k-pairs, dst[(k/2) * 2P + 2l + k%2]     (vdpbf16ps, AMX B tiles)
//   RowsBF16    bf16 rows of 32 k, dst[(k/32) * 32P + 32l + k%32]   (AMX A tiles)
#pragma once

#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

struct PanelF32 {
  using Elem = float;
  static int64_t index(int P, int64_t l, int64_t k) { return k * P + l; }
  static Elem convert(float v) { return v; }
  static Elem raw(const char* p, DType dt) { return load_scalar(p, dt); }
};

struct PairsBF16 {
  using Elem = uint16_t;
  static int64_t index(int P, int64_t l, int64_t k) { return (k >> 1) * 2 * P + 2 * l + (k & 1); }
  static Elem convert(float v) { return f32_to_bf16(v); }
  static Elem raw(const char* p, DType dt) {  // bf16 bits are copied exactly
    if (dt != DType::kBF16) return f32_to_bf16(load_scalar(p, dt));
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
  }
};

struct RowsBF16 : PairsBF16 {
  static int64_t index(int P, int64_t l, int64_t k) { return (k >> 5) * 32 * P + 32 * l + (k & 31); }
};

// The prologue of the backward GEMMs: multiply A by act'(y), y given as an Operand with
// A's (lane, k) indexing. act == 0 means no prologue.
struct Prologue {
  Operand y;
  int act = 0;
  float slope = 0.f;
};

inline Prologue prologue_a(const Problem& p, int64_t m0, int64_t k0) {
  Prologue pr;
  pr.act = p.dact;
  pr.slope = p.dact_slope;
  if (p.dact != 0) pr.y = operand_a(p.y, m0, k0);
  return pr;
}

template <class Layout>
void pack_generic(const Operand& src, const Prologue& pro, int P, int lanes, int64_t kc, int64_t kcp,
                  typename Layout::Elem* dst) {
  using E = typename Layout::Elem;
  std::memset(static_cast<void*>(dst), 0, sizeof(E) * P * kcp);
  const int64_t sz = dtype_size(src.dt);
  for (int64_t l = 0; l < lanes; ++l) {
    for (int64_t k = 0; k < kc; ++k) {
      const char* p = src.base + (l * src.ls + k * src.ks) * sz;
      E v;
      if (pro.act == kIdentity) {
        v = Layout::raw(p, src.dt);
      } else {
        const char* q = pro.y.base + (l * pro.y.ls + k * pro.y.ks) * dtype_size(pro.y.dt);
        v = Layout::convert(grad_from_output_ref(pro.act, load_scalar(p, src.dt), load_scalar(q, pro.y.dt),
                                                 pro.slope));
      }
      dst[Layout::index(P, l, k)] = v;
    }
  }
}

// Scalar epilogue of one element, shared by the portable kernel and the vector tails.
inline void finish_scalar(const TileOut& o, int r, int c, float s) {
  if (!o.last) {
    o.acc[r * o.ld_acc + c] = s;
    return;
  }
  if (o.bias != nullptr) s += o.bias[c];
  s = act_ref(o.act, s, o.slope);
  store_scalar(static_cast<char*>(o.out) + (r * o.ldc + c) * dtype_size(o.dtype), o.dtype, s);
}

}  // namespace
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

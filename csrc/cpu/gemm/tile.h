// Small shared pieces of the GEMM core: the contract between the blocked driver and a
// micro-kernel (TileOut), the strided-operand view the packers read (Operand), and
// portable scalar dtype conversions.
//
// Everything here is portable C++ in an anonymous namespace, so each translation unit
// (whatever its target) owns its copy and no wide-ISA code can leak between them.
#pragma once

#include <cstdint>
#include <cstring>

#include "gemm.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// What a micro-kernel does with one rows x cols tile of C (rows <= MR, cols <= NR):
//
//   s = (first ? 0 : acc[r][c]) + sum over this k block of A panel x B panel
//   last  ? out[r][c] = to_dtype(act(s + bias[c]))   (the epilogue, on registers)
//         : acc[r][c] = s                            (fp32 partial sum for the next block)
//
// When C is fp32, `acc` and `out` are the same memory (C itself). Otherwise `acc` is the
// driver's per-thread fp32 scratch. A block-sparse kernel drives the same micro-kernels
// by packing only the non-zero k blocks into the panels.
struct TileOut {
  float* acc = nullptr;
  int64_t ld_acc = 0;
  void* out = nullptr;  // points at element (m0, n0) of C
  int64_t ldc = 0;
  DType dtype = DType::kF32;
  const float* bias = nullptr;  // bias + n0, or null
  int act = 0;
  float slope = 0.f;
  bool first = true, last = true;
  int rows = 0, cols = 0;
  // Software prefetch the kernel issues, one cache line per k step, into L2: the source
  // of the NEXT B micro-panel (see driver.h), pf_count lines starting at column line
  // pf_col of row pf_row; rows are pf_stride bytes apart and pf_lpr lines long.
  const char* pf_row = nullptr;
  int64_t pf_stride = 0;
  int pf_lpr = 1, pf_col = 0, pf_count = 0;
};


// A strided operand as a packer sees it: `lanes` (the rows of A, or the columns of B)
// by k. Element (l, k) is at base + (l * ls + k * ks) * size. `y` is the prologue's
// derivative source with A's shape (base null when there is no prologue).
struct Operand {
  const char* base = nullptr;
  int64_t ls = 0, ks = 0;
  DType dt = DType::kF32;
};

inline Operand operand_a(const Mat& a, int64_t m0, int64_t k0) {
  const int64_t sz = dtype_size(a.dtype);
  return {static_cast<const char*>(a.data) + (m0 * a.rs + k0 * a.cs) * sz, a.rs, a.cs, a.dtype};
}
inline Operand operand_b(const Mat& b, int64_t k0, int64_t n0) {
  const int64_t sz = dtype_size(b.dtype);
  return {static_cast<const char*>(b.data) + (k0 * b.rs + n0 * b.cs) * sz, b.cs, b.rs, b.dtype};
}

// The memory a packer will read for one B micro-panel, as rows of bytes (for prefetch).
struct Region {
  const char* base = nullptr;
  int64_t stride = 0;   // bytes between rows
  int64_t rows = 0;     // 0: nothing worth prefetching
  int lines = 0;        // cache lines per row
};

// Region of a strided operand's (lanes x kc) block when it is read along k (ks == 1) or
// along lanes (ls == 1); empty otherwise.
inline Region operand_region(const Operand& src, int lanes, int64_t kc) {
  Region r;
  const int64_t sz = dtype_size(src.dt);
  r.base = src.base;
  if (src.ks == 1) {
    r.stride = src.ls * sz, r.rows = lanes, r.lines = static_cast<int>(ceil_div(kc * sz, 64) + 1);
  } else if (src.ls == 1) {
    r.stride = src.ks * sz, r.rows = kc, r.lines = static_cast<int>(ceil_div(lanes * sz, 64) + 1);
  }
  return r;
}

// ---- scalar conversions (round to nearest even, NaN stays NaN) -----------------------

inline float bf16_to_f32(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (f != f) return static_cast<uint16_t>((u >> 16) | 0x0040);  // quiet NaN, sign kept
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {  // subnormal half: normalise
    int e = 113;
    while ((man & 0x400u) == 0) man <<= 1, --e;
    u = sign | (static_cast<uint32_t>(e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00u;          // NaN
  if (a >= 0x477ff000u) return sign | 0x7c00u;         // rounds to inf
  if (a < 0x38800000u) {                               // subnormal or zero half
    if (a < 0x33000000u) return sign;                  // < half of the smallest subnormal
    const uint32_t man = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(a >> 23);  // 14..24
    const uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    return sign | static_cast<uint16_t>(half + (rem > mid || (rem == mid && (half & 1u))));
  }
  const uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;  // rebias 127 -> 15
  return sign | static_cast<uint16_t>(r >> 13);
}

inline float load_scalar(const char* p, DType dt) {
  if (dt == DType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, p, 2);
  return dt == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

inline void store_scalar(char* p, DType dt, float v) {
  if (dt == DType::kF32) {
    std::memcpy(p, &v, 4);
    return;
  }
  const uint16_t h = dt == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

}  // namespace
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

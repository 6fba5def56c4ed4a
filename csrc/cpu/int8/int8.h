// The CPU int8 kernels behind fastgan_ext::quantize_per_token / quantize_per_tensor /
// int8_pack_weight / int8_linear_fwd / int8_linear_dynamic_fwd (schemas in csrc/ops.cpp,
// binding in int8_linear.cpp). int8_linear_dynamic_fwd is int8_linear_fwd whose A arrives as
// float: every GEMM path quantises each row per token (the quantiser below, so bit for bit
// quantize_per_token) while it packs A (a_row), instead of a separate pass and op call.
//
//   packed_weight.h        the packed weight blob: header, 16-column panels, compensation sums
//   epilogue_avx512.h      int32 zmm accumulators -> scales, bias, activation, fp/int8/int32 store
//   amx_int8_kernel.h      AMX tdpbssd traits, compiled against real tiles and the emulation
//   amx_int8_emulation.h   scalar TDPBSSD on top of ../amx_emulation.h (tests without AMX)
//   vnni_avx512.h          the VNNI A packing and k loop (dense and block-sparse GEMMs)
//   bsr_packed.h           the block-sparse int8 weight blob and its GEMMs (../bsr_int8_*.cpp)
//   aten_args.h            the ATen side shared by the dense and block-sparse bindings
//   ../int8_portable.cpp   plain C++ quantisers and GEMM (any machine; also the reference the
//                          vector paths are tested against through the ISA cap)
//   ../int8_avx512.cpp     AVX-512 quantisers (one pass per row while it is in cache)
//   ../int8_vnni.cpp       AVX512-VNNI vpdpbusd GEMM (u8 x s8 with the +128 compensation)
//   ../int8_avx2.cpp       AVX2 vpmaddwd GEMM (s8 x s8 widened to int16; CPUs without VNNI)
//   ../int8_quantize_avx2.cpp  AVX2 quantisers
//   epilogue_avx2.h        int32 ymm accumulators -> the same epilogue on AVX2
//   ../int8_amx*.cpp       AMX tdpbssd GEMM (s8 x s8), real and emulated
//
// Everything computes exactly what fastgan_kernels/ops/int8_linear.py's references compute:
// the quantisers bit for bit (IEEE division, round half to even), the int32 accumulator
// exactly, and the float epilogue in the reference's order of fp32 operations
// ((acc * x_scale) * w_scale + bias, no FMA contraction), so only the vector tanh / sigmoid
// differ from torch's in the last bits.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace fastgan {
namespace cpu {
namespace int8 {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Columns per packed panel, k per VNNI group, and the AMX tile depth (bytes of k per tile row).
constexpr int kPanel = 16, kGroup = 4, kTileK = 64;

// ---- quantisers --------------------------------------------------------------------------
enum class InType : int8_t { kF32 = 0, kBF16 = 1, kF16 = 2 };

struct QuantArgs {
  int64_t M = 0, K = 0;
  const void* x = nullptr;   // element (m, k) at x + (m * rs + k * cs) * size
  int64_t rs = 0, cs = 0;
  InType dt = InType::kF32;
  int8_t* q = nullptr;       // [M, K] contiguous
  float* scale = nullptr;    // per token: [M] written; per tensor: null
  float tensor_scale = 0.f;  // per tensor: the given scale
};

// Quantise rows [m0, m1); returns the first row holding NaN / Inf (that row's q is left
// unspecified), or -1. One thread; the caller splits the rows.
int64_t quantize_rows_portable(const QuantArgs& a, int64_t m0, int64_t m1);
int64_t quantize_rows_avx512(const QuantArgs& a, int64_t m0, int64_t m1);
int64_t quantize_rows_avx2(const QuantArgs& a, int64_t m0, int64_t m1);
using QuantRowsFn = int64_t (*)(const QuantArgs&, int64_t, int64_t);
// The row quantiser of this machine and ISA cap (AVX-512 > AVX2 > portable, all bit-identical).
QuantRowsFn quantizer();

// The smallest row index reported by parallel workers: row() is -1 while none was.
class FirstBadRow {
 public:
  void note(int64_t r) {
    int64_t cur = row_.load(std::memory_order_relaxed);
    while (r < cur && !row_.compare_exchange_weak(cur, r)) {
    }
  }
  bool any() const { return row_.load() != kNone; }
  int64_t row() const { return any() ? row_.load() : -1; }

 private:
  static constexpr int64_t kNone = INT64_MAX;
  std::atomic<int64_t> row_{kNone};
};

// ---- GEMM + epilogue ---------------------------------------------------------------------
enum class OutKind : int8_t { kF32 = 0, kBF16 = 1, kF16 = 2, kI8 = 3, kI32 = 4 };

// Views into a validated packed blob (packed_weight.h).
struct PackedView {
  int64_t n = 0, k = 0, kp = 0, panels = 0;
  const int32_t* comp = nullptr;  // [panels * 16]: 128 * sum_k w[n, k], mod 2^32
  const int8_t* data = nullptr;   // panel p at data + p * kp * 16: [kp / 4][16][4]
  int64_t panel_bytes() const { return kp * kPanel; }
};

struct Epilogue {
  const float* x_scale = nullptr;  // [M] or [1]
  bool per_row_scale = true;
  const float* w_scale = nullptr;  // [N]
  const float* bias = nullptr;     // [N] or null
  int act = 0;
  float slope = 0.f;
  OutKind kind = OutKind::kF32;
  float out_scale = 1.f;           // int8 output only
  void* out = nullptr;             // [M, N] row-major, leading dimension ldo
  int64_t ldo = 0;                 // elements between output rows; 0 means N (a column slice
                                   // of a wider output, as in the layer chain, sets it)
  int64_t ld(int64_t n) const { return ldo ? ldo : n; }
};

// A float A (int8_linear_dynamic_fwd), quantised per token while the GEMM packs it.
struct FloatA {
  const void* x = nullptr;             // element (m, k) at x + (m * rs + k * cs) * size
  int64_t rs = 0, cs = 0;
  InType dt = InType::kF32;
  QuantRowsFn quantize_rows = nullptr;  // quantizer(): avx512, avx2 or portable (bit-identical)
  float* scale = nullptr;               // [M], written while packing: the epilogue's x_scale
};

struct GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const int8_t* x = nullptr;  // xq: element (m, k) at x[m * rs + k * cs]
  int64_t rs = 0, cs = 0;
  const FloatA* fx = nullptr;  // instead of xq: a float A, quantised while packed
  PackedView w;
  Epilogue e;
};

// Row m of A as int8, element k at result[k * *cs]: xq's row in place, or, for a float A,
// the row quantised into tmp (K bytes; *cs = 1) with its scale stored in fx->scale[m].
// nullptr when that float row holds NaN / Inf (tmp is then unspecified).
inline const int8_t* a_row(const GemmArgs& g, int64_t m, int8_t* tmp, int64_t* cs) {
  if (g.fx == nullptr) {
    *cs = g.cs;
    return g.x + m * g.rs;
  }
  const FloatA& f = *g.fx;
  QuantArgs a;
  a.M = 1, a.K = g.K;
  a.x = static_cast<const char*>(f.x) + m * f.rs * (f.dt == InType::kF32 ? 4 : 2);
  a.cs = f.cs, a.dt = f.dt;
  a.q = tmp, a.scale = f.scale + m;
  *cs = 1;
  return f.quantize_rows(a, 0, 1) < 0 ? tmp : nullptr;
}

// The scalar epilogue of one output element (m, n) from its int32 accumulator (the portable
// paths; int8_portable.cpp).
void store_portable(const Epilogue& e, int64_t N, int64_t m, int64_t n, int32_t acc);

// The code paths int8_linear_fwd can take (names from path_name()).
enum class Path : int { kPortable = 0, kAvx512Vnni = 1, kAmx = 2, kAmxEmulated = 3, kAvx2 = 4 };
Path select_path();
const char* path_name(Path p);

// Each returns -1, or (float A only) the first row holding NaN / Inf: then the output is
// left unspecified.
int64_t gemm_portable(const GemmArgs& g);
int64_t gemm_vnni(const GemmArgs& g);
int64_t gemm_avx2(const GemmArgs& g);
int64_t gemm_amx(const GemmArgs& g);
int64_t gemm_amx_emulated(const GemmArgs& g);
// The GEMM of the path select_path() picks now (one of the above).
int64_t run_gemm(const GemmArgs& g);

// Work split shared by the vector GEMMs: `nblocks` column blocks, each optionally split into
// `msplit` row ranges (only when there are too few column blocks to keep every thread busy),
// and a parallel grain that keeps tiny problems on one thread.
struct Split {
  int64_t msplit = 1, tasks = 1, grain = 1;
};
Split split_work(int64_t M, int64_t K, int64_t nblocks, int64_t cols_per_block, int64_t row_unit);

// Per-thread, grow-only, 64-byte aligned buffers, one per slot:
//   kPackedA   the packed activations: the calling thread's; the workers only read it;
//   kRow       one row of A quantised from float (a_row's tmp): each worker's own;
//   kScales    the per-row scales of a float A: the calling thread's.
class ThreadScratch {
 public:
  enum Slot { kPackedA = 0, kRow = 1, kScales = 2, kSlots = 3 };
  static void* get(int64_t bytes, Slot slot = kPackedA) {
    static thread_local ThreadScratch all[kSlots];
    ThreadScratch& s = all[slot];
    if (bytes > s.size_) {
      std::free(s.ptr_);
      const int64_t sz = round_up(bytes < 4096 ? 4096 : bytes, 64);
      s.ptr_ = std::aligned_alloc(64, static_cast<size_t>(sz));
      if (s.ptr_ == nullptr) throw std::bad_alloc();
      s.size_ = sz;
    }
    return s.ptr_;
  }
  ~ThreadScratch() { std::free(ptr_); }

 private:
  void* ptr_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

// The portable int8 path: plain C++ quantisers and GEMM for any machine (x86-64 without
// AVX512-VNNI, aarch64), compiled for the baseline target. The GEMM reads the same packed
// panels as the vector paths (so tests of this path check the packing too), one row of A at a
// time against one 16-column panel, with the scalar epilogue of the reference. A float A
// (int8_linear_dynamic_fwd) is quantised per token one row at a time (a_row, int8/int8.h).
//
// Exactness: the quantisers use the IEEE division and nearbyint (round half to even in the
// default rounding mode), and the non-finite test on the integer bits of |x| (a max over
// `bits & 0x7fffffff` is the max of |x| for finite floats; NaN / Inf are >= 0x7f800000).
// The epilogue is kept from FMA contraction (aarch64 would contract y * ws + b otherwise).
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "activation.h"
#include "int8/int8.h"
#include "int8/quantize_rows.h"
#include "parallel.h"

#if defined(__clang__)
#define FASTGAN_NO_CONTRACT
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#define FASTGAN_NO_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define FASTGAN_NO_CONTRACT
#endif

namespace fastgan {
namespace cpu {
namespace int8 {
namespace {

inline float load_as_float(const void* x, int64_t i, InType dt) {
  switch (dt) {
    case InType::kBF16: return static_cast<float>(static_cast<const c10::BFloat16*>(x)[i]);
    case InType::kF16: return static_cast<float>(static_cast<const c10::Half*>(x)[i]);
    default: return static_cast<const float*>(x)[i];
  }
}

inline uint32_t abs_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return u & 0x7fffffffu;
}

inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

FASTGAN_NO_CONTRACT inline int8_t round_clamp(float v) {
  if (v != v) return 0;
  v = std::min(std::max(v, -127.f), 127.f);
  return static_cast<int8_t>(std::nearbyint(v));
}

constexpr uint32_t kNonFinite = 0x7f800000u;

}  // namespace

int64_t quantize_rows_portable(const QuantArgs& a, int64_t m0, int64_t m1) {
  std::vector<float> row(static_cast<size_t>(a.K));
  for (int64_t m = m0; m < m1; ++m) {
    uint32_t amax = 0;
    for (int64_t k = 0; k < a.K; ++k) {
      row[k] = load_as_float(a.x, m * a.rs + k * a.cs, a.dt);
      amax = std::max(amax, abs_bits(row[k]));
    }
    if (amax >= kNonFinite) return m;
    float scale = a.tensor_scale;
    if (a.scale) {
      scale = amax == 0 ? static_cast<float>(1.0 / 127.0) : bits_float(amax) / 127.0f;
      a.scale[m] = scale;
    }
    int8_t* q = a.q + m * a.K;
    for (int64_t k = 0; k < a.K; ++k) q[k] = round_clamp(row[k] / scale);
  }
  return -1;
}

int64_t quantize_rows_with(const QuantArgs& a, int64_t m0, int64_t m1, const RowQuantizer& rq) {
  const int esz = a.dt == InType::kF32 ? 4 : 2;
  static thread_local std::vector<float> gathered;
  for (int64_t m = m0; m < m1; ++m) {
    const void* row = static_cast<const char*>(a.x) + m * a.rs * esz;
    InType dt = a.dt;
    if (a.cs != 1) {  // strided row: gather it (widened to fp32, exactly) first
      gathered.resize(static_cast<size_t>(a.K));
      for (int64_t k = 0; k < a.K; ++k) gathered[k] = load_as_float(row, k * a.cs, a.dt);
      row = gathered.data(), dt = InType::kF32;
    }
    int8_t* q = a.q + m * a.K;
    if (a.scale) {
      const uint32_t amax = rq.amax_bits(row, dt, a.K);
      if (amax >= kNonFinite) return m;
      const float scale = amax == 0 ? static_cast<float>(1.0 / 127.0) : bits_float(amax) / 127.0f;
      a.scale[m] = scale;
      rq.quantize(row, dt, a.K, scale, q);
    } else if (rq.quantize(row, dt, a.K, a.tensor_scale, q) >= kNonFinite) {
      return m;
    }
  }
  return -1;
}

FASTGAN_NO_CONTRACT void store_portable(const Epilogue& e, int64_t N, int64_t m, int64_t n, int32_t acc) {
  const int64_t i = m * N + n;
  if (e.kind == OutKind::kI32) {
    static_cast<int32_t*>(e.out)[i] = acc;
    return;
  }
  float y = static_cast<float>(acc) * e.x_scale[e.per_row_scale ? m : 0];
  y = y * e.w_scale[n];
  if (e.bias) y = y + e.bias[n];
  y = act_ref(e.act, y, e.slope);
  switch (e.kind) {
    case OutKind::kF32: static_cast<float*>(e.out)[i] = y; break;
    case OutKind::kBF16: static_cast<c10::BFloat16*>(e.out)[i] = c10::BFloat16(y); break;
    case OutKind::kF16: static_cast<c10::Half*>(e.out)[i] = c10::Half(y); break;
    default: static_cast<int8_t*>(e.out)[i] = round_clamp(y / e.out_scale); break;
  }
}

int64_t gemm_portable(const GemmArgs& g) {
  const int64_t kgs = ceil_div(g.K, kGroup), pb = g.w.panel_bytes();
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, g.N * g.K));
  FirstBadRow bad;
  parallel_for(0, g.M, grain, [&](int64_t m0, int64_t m1) {
    std::vector<int8_t> a(static_cast<size_t>(kgs * kGroup), 0);
    for (int64_t m = m0; m < m1; ++m) {
      int64_t cs;
      const int8_t* src = a_row(g, m, a.data(), &cs);  // a float A: quantised into a
      if (src == nullptr) {  // the later rows of this range can only come later
        bad.note(m);
        return;
      }
      if (src != a.data())
        for (int64_t k = 0; k < g.K; ++k) a[k] = src[k * cs];
      for (int64_t p = 0; p < g.w.panels; ++p) {
        int32_t acc[kPanel] = {};
        const int8_t* b = g.w.data + p * pb;
        for (int64_t kg = 0; kg < kgs; ++kg, b += kPanel * kGroup) {
          const int8_t* ak = a.data() + kg * kGroup;
          for (int j = 0; j < kPanel; ++j)
            acc[j] += ak[0] * b[4 * j] + ak[1] * b[4 * j + 1] + ak[2] * b[4 * j + 2] + ak[3] * b[4 * j + 3];
        }
        const int cols = static_cast<int>(std::min<int64_t>(kPanel, g.N - p * kPanel));
        for (int j = 0; j < cols; ++j) store_portable(g.e, g.e.ld(g.N), m, p * kPanel + j, acc[j]);
      }
    }
  });
  return bad.row();
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

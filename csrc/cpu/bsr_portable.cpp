// The portable block-sparse path: plain C++ for the baseline target (x86-64 SSE2, or
// aarch64 NEON through auto-vectorisation), correct on any machine, fp32 accumulation.
//
// Same structure and thread split as the AVX-512 driver (bsr/driver_avx512.h), with fp32
// row-major packs instead of micro-kernel panels: x (and g = grad_out * act'(y)) packed
// once as [M][Kp] ([M][Np]), kept blocks converted/transposed per block row into [bk][bn]
// so the innermost loops run along contiguous columns (vectorisable without reassociating
// any sum), 4 batch rows per tile sharing each loaded weight row.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "activation.h"
#include "bsr/problem.h"
#include "bsr/split.h"
#include "gemm/driver.h"
#include "gemm/pack_portable.h"
#include "parallel.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

using gemm::ceil_div;
using gemm::load_scalar;
using gemm::Scratch;
using gemm::store_scalar;

constexpr int64_t kRows = 4;  // batch rows per tile

Scratch& scratch(int slot) {  // 0, 1: shared by a call (caller's thread); 2, 3: per worker
  static thread_local Scratch s[4];
  return s[slot];
}

int threads_of(double fmas) { return threads_for(fmas, at::in_parallel_region() ? 1 : at::get_num_threads()); }

inline const char* at2(const Mat& m, int64_t i, int64_t j) {
  return static_cast<const char*>(m.data) + (i * m.rs + j * m.cs) * gemm::dtype_size(m.dtype);
}

// dst[m][k] = a[m][k] (* act'(y[m][k])), fp32, zero for k in [kc, kcp).
void pack_rows(const Mat& a, const Mat& y, int dact, float slope, int64_t m0, int64_t m1, int64_t kc, int64_t kcp,
               float* dst) {
  for (int64_t m = m0; m < m1; ++m) {
    float* d = dst + m * kcp;
    for (int64_t k = 0; k < kc; ++k) {
      const float v = load_scalar(at2(a, m, k), a.dtype);
      d[k] = dact ? grad_from_output_ref(dact, v, load_scalar(at2(y, m, k), y.dtype), slope) : v;
    }
    for (int64_t k = kc; k < kcp; ++k) d[k] = 0.f;
  }
}

const char* block_ptr(const Structure& w, int64_t j) {
  return static_cast<const char*>(w.values) + j * w.bn * w.bk * gemm::dtype_size(w.vdtype);
}

void forward_range(const Forward& p, const float* xp, int64_t u0, int64_t u1) {
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Kp = w.nbc * bk, mt = ceil_div(p.M, kRows);
  const int64_t vsz = gemm::dtype_size(w.vdtype), esz = gemm::dtype_size(p.ydtype);
  std::vector<float> acc(kRows * bn);
  for (int64_t u = u0; u < u1;) {
    const int64_t r = u / mt, i0 = u % mt, i1 = std::min(mt, i0 + (u1 - u));
    u += i1 - i0;
    const int64_t j0 = w.row_ptr[r], nr = w.row_ptr[r + 1] - j0, ncols = std::min(bn, w.N - r * bn);
    // The row's blocks transposed: vt[jj][kk][n].
    float* vt = static_cast<float*>(scratch(2).get(sizeof(float) * std::max<int64_t>(1, nr * bk * bn)));
    for (int64_t jj = 0; jj < nr; ++jj) {
      const char* blk = block_ptr(w, j0 + jj);
      for (int64_t n = 0; n < bn; ++n)
        for (int64_t kk = 0; kk < bk; ++kk)
          vt[(jj * bk + kk) * bn + n] = load_scalar(blk + (n * bk + kk) * vsz, w.vdtype);
    }
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t m0 = i * kRows, rows = std::min(kRows, p.M - m0);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t jj = 0; jj < nr; ++jj) {
        const float* xs = xp + m0 * Kp + w.col_idx[j0 + jj] * bk;
        for (int64_t kk = 0; kk < bk; ++kk) {
          const float* v = vt + (jj * bk + kk) * bn;
          for (int64_t mr = 0; mr < rows; ++mr) {
            const float xv = xs[mr * Kp + kk];
            float* a = acc.data() + mr * bn;
            for (int64_t n = 0; n < bn; ++n) a[n] += xv * v[n];
          }
        }
      }
      for (int64_t mr = 0; mr < rows; ++mr) {
        char* out = static_cast<char*>(p.y) + ((m0 + mr) * w.N + r * bn) * esz;
        for (int64_t n = 0; n < ncols; ++n) {
          float s = acc[mr * bn + n] + (p.bias ? p.bias[r * bn + n] : 0.f);
          store_scalar(out + n * esz, p.ydtype, act_ref(p.act, s, p.slope));
        }
      }
    }
  }
}

void grad_x_range(const Backward& p, const float* gp, int64_t u0, int64_t u1) {
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Np = w.nbr * bn, mt = ceil_div(p.M, kRows);
  const int64_t vsz = gemm::dtype_size(w.vdtype), esz = gemm::dtype_size(p.x.dtype);
  std::vector<float> acc(kRows * bk);
  for (int64_t u = u0; u < u1;) {
    const int64_t c = u / mt, i0 = u % mt, i1 = std::min(mt, i0 + (u1 - u));
    u += i1 - i0;
    const int64_t t0 = w.t_row_ptr[c], nc = w.t_row_ptr[c + 1] - t0, ncols = std::min(bk, w.K - c * bk);
    // The column's blocks in fp32, as stored: vb[ii][n][kk].
    float* vb = static_cast<float*>(scratch(2).get(sizeof(float) * std::max<int64_t>(1, nc * bn * bk)));
    for (int64_t ii = 0; ii < nc; ++ii) {
      const char* blk = block_ptr(w, w.t_block[t0 + ii]);
      for (int64_t e = 0; e < bn * bk; ++e) vb[ii * bn * bk + e] = load_scalar(blk + e * vsz, w.vdtype);
    }
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t m0 = i * kRows, rows = std::min(kRows, p.M - m0);
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t ii = 0; ii < nc; ++ii) {
        const float* gs = gp + m0 * Np + w.t_col_idx[t0 + ii] * bn;
        for (int64_t n = 0; n < bn; ++n) {
          const float* v = vb + (ii * bn + n) * bk;
          for (int64_t mr = 0; mr < rows; ++mr) {
            const float gv = gs[mr * Np + n];
            float* a = acc.data() + mr * bk;
            for (int64_t kk = 0; kk < bk; ++kk) a[kk] += gv * v[kk];
          }
        }
      }
      for (int64_t mr = 0; mr < rows; ++mr) {
        char* out = static_cast<char*>(p.gx) + ((m0 + mr) * w.K + c * bk) * esz;
        for (int64_t kk = 0; kk < ncols; ++kk) store_scalar(out + kk * esz, p.x.dtype, acc[mr * bk + kk]);
      }
    }
  }
}

// grad_values[j] = g[:, r]^T @ x[:, c] for blocks [j0, j1), accumulated as [bn][bk].
void grad_values_range(const Backward& p, const float* gp, const float* xp, int64_t j0, int64_t j1) {
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Np = w.nbr * bn, Kp = w.nbc * bk;
  const int64_t vsz = gemm::dtype_size(w.vdtype);
  float* acc = static_cast<float*>(scratch(3).get(sizeof(float) * bn * bk));
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t r = std::upper_bound(w.row_ptr, w.row_ptr + w.nbr + 1, static_cast<int32_t>(j)) - w.row_ptr - 1;
    const int64_t c = w.col_idx[j];
    std::fill(acc, acc + bn * bk, 0.f);
    for (int64_t m = 0; m < p.M; ++m) {
      const float* gs = gp + m * Np + r * bn;
      const float* xs = xp + m * Kp + c * bk;
      for (int64_t n = 0; n < bn; ++n) {
        const float gv = gs[n];
        float* a = acc + n * bk;
        for (int64_t kk = 0; kk < bk; ++kk) a[kk] += gv * xs[kk];
      }
    }
    char* out = static_cast<char*>(p.gv) + j * bn * bk * vsz;
    for (int64_t e = 0; e < bn * bk; ++e) store_scalar(out + e * vsz, w.vdtype, acc[e]);
  }
}

}  // namespace

void forward_portable(const Forward& p) {
  const Structure& w = p.w;
  const int64_t Kp = w.nbc * w.bk, mt = ceil_div(p.M, kRows);
  const int T = threads_of(static_cast<double>(p.M) * w.nnz * w.bn * w.bk);
  float* xp = static_cast<float*>(scratch(0).get(sizeof(float) * p.M * Kp));
  parallel_for(0, p.M, T == 1 ? p.M : 16, [&](int64_t b, int64_t e) {
    pack_rows(p.x, p.x, 0, 0.f, b, e, w.K, Kp, xp);
  });
  const auto bounds = balanced_bounds(w.nbr, mt, T, [&](int64_t r) {
    return (w.row_ptr[r + 1] - w.row_ptr[r]) * w.bk + kTileOverhead;
  });
  parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) forward_range(p, xp, bounds[t], bounds[t + 1]);
  });
}

void backward_portable(const Backward& p) {
  const Structure& w = p.w;
  const int64_t Np = w.nbr * w.bn, Kp = w.nbc * w.bk, mt = ceil_div(p.M, kRows);
  const double fmas = static_cast<double>(p.M) * w.nnz * w.bn * w.bk * ((p.gx ? 1 : 0) + (p.gv ? 1 : 0));
  const int T = threads_of(fmas);
  float* gp = static_cast<float*>(scratch(0).get(sizeof(float) * p.M * Np));
  float* xp = p.gv ? static_cast<float*>(scratch(1).get(sizeof(float) * p.M * Kp)) : nullptr;
  parallel_for(0, p.M, T == 1 ? p.M : 16, [&](int64_t b, int64_t e) {
    pack_rows(p.g, p.y, p.dact, p.slope, b, e, w.N, Np, gp);
    if (xp) pack_rows(p.x, p.x, 0, 0.f, b, e, w.K, Kp, xp);
  });
  std::vector<int64_t> xb(T + 1, 0), vb(T + 1, 0);
  if (p.gx) xb = balanced_bounds(w.nbc, mt, T, [&](int64_t c) {
    return (w.t_row_ptr[c + 1] - w.t_row_ptr[c]) * w.bn + kTileOverhead;
  });
  if (p.gv) vb = balanced_bounds(w.nnz, 1, T, [](int64_t) { return 1; });
  parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      if (p.gx) grad_x_range(p, gp, xb[t], xb[t + 1]);
      if (p.gv) grad_values_range(p, gp, xp, vb[t], vb[t + 1]);
    }
  });
}

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

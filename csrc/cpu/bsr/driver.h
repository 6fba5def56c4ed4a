// The block-sparse drivers (forward and backward), templated on a kernel traits struct
// so every vector path shares the loops: AVX-512 fp32 FMA and bf16 vdpbf16ps
// (bsr_avx512_*.cpp, MR = 8, 16- or 32-column tiles) and AVX2 fp32 FMA (bsr_avx2_f32.cpp,
// MR = 6, 16-column tiles). The micro-tiles' contract: segs.h.
//
//   struct KT {
//     using Elem = float | uint16_t;  static constexpr int KU;   // k unit (bf16 pairs: 2)
//     static constexpr int MR;                           // A panel lanes (tile rows)
//     static constexpr int64_t kGroupBytes, kChunkBytes; // L2 shares, see grouped_walk
//     static int tile_width(int64_t block);              // B panel columns: 16 or 32
//     template <int P> static void pack(const Operand&, const Prologue&, int lanes,
//                                       int64_t kc, int64_t kcp, Elem* dst);
//                      // one P-lane panel of kcp k (zero past kc and past `lanes`)
//     static SegTile tile(int rows, int cols, int bs);   // rows x cols, B row stride bs
//     static bool b_in_place(const Structure&);          // grad_x reads values unpacked
//   };
//
// (Below, MR = 8 and TW = 32 are the AVX-512 fp32 instance's numbers; the AVX2 one has
// MR = 6, TW = 16.)
// Forward (y = act(x @ W^T + b)):
//   1. x is packed ONCE, all of K (zero-padded to whole blocks, never read past K), as
//      MR = 8 row panels [ceil(M/8)][Kp][8]: the A segment of block column c of m-tile i
//      is the contiguous run at i * Kp * 8 + c * bk * 8. Split by lines (split.h) all
//      threads pack it together before the walk; split by m-tiles each thread packs its own
//      m-tiles inside the walk's parallel region.
//   2. Each thread walks its share (split.h: grouped_walk): per group of block rows it
//      packs the rows' kept blocks into B panels of TW = min(bn, 32) columns ([bk][TW] per
//      block, blocks consecutive, so B is one stream per tile), then runs its m-tiles over
//      them: one register tile per (m-tile, TW columns), accumulated over all kept blocks
//      of the row, finished by the epilogue (bias, activation, masked to N). A block row
//      with no kept block runs zero segments: act(bias).
// Backward:
//   grad_x: the forward's structure over W^T: g = grad_out * act'(y) packed once as
//      [ceil(M/8)][Np][8] (prologue), block columns c instead of block rows, segments the
//      column's kept blocks (t_col_idx, t_block); B is values itself (fp32: [bn][bk] is
//      already a [k][columns] panel) or the column's blocks packed as [bn][TW].
//   grad_values: per kept block j (r, c) and 8 of its rows, g[:, r]^T @ x[:, c] with the
//      batch as k: g^T packed once as [Np/8][M][8] panels (prologue; g and y read row by
//      row), x once as [Kp/TW][M][TW] column panels; units (j, 8 rows) split evenly, the
//      batch walked in L1-sized chunks with fp32 partial sums.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "../gemm/driver.h"
#include "../gemm/pack_portable.h"
#include "../parallel.h"
#include "problem.h"
#include "segs.h"
#include "split.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

using gemm::ceil_div;
using gemm::Operand;
using gemm::Prologue;
using gemm::round_up;
using gemm::Scratch;
using gemm::TileOut;

template <class KT>
Scratch& scratch(int slot) {  // 0, 1, 4: shared by a call (caller's thread); 2, 3: per worker
  static thread_local Scratch s[5];
  return s[slot];
}

// A strided operand view: lanes along `ls`, k along `ks`, from element (l0, k0) of m.
inline Operand view(const Mat& m, int64_t l0, int64_t ls, int64_t k0, int64_t ks) {
  return {static_cast<const char*>(m.data) + (l0 * ls + k0 * ks) * gemm::dtype_size(m.dtype), ls, ks, m.dtype};
}

template <class KT, int P>
void pack(const Operand& src, const Prologue& pro, int64_t lanes, int64_t kc, int64_t kcp, typename KT::Elem* dst) {
  if (lanes <= 0) {
    std::memset(static_cast<void*>(dst), 0, sizeof(typename KT::Elem) * P * kcp);
    return;
  }
  KT::template pack<P>(src, pro, static_cast<int>(std::min<int64_t>(lanes, P)), kc, kcp, dst);
}

// A B panel of TW (16 or 32) columns.
template <class KT>
void pack_tw(int tw, const Operand& src, int64_t lanes, int64_t kc, int64_t kcp, typename KT::Elem* dst) {
  if (tw == 16) pack<KT, 16>(src, Prologue{}, lanes, kc, kcp, dst);
  else pack<KT, 32>(src, Prologue{}, lanes, kc, kcp, dst);
}

// x rows [8i, 8i+8) (or g's under the prologue) as an A panel [Kp][8] over the k dim.
template <class KT>
void pack_rows(const Mat& a, const Mat& y, int dact, float slope, int64_t M, int64_t i, int64_t kc, int64_t kcp,
               typename KT::Elem* dst) {
  Prologue pro;
  pro.act = dact, pro.slope = slope;
  if (dact) pro.y = view(y, KT::MR * i, y.rs, 0, y.cs);
  pack<KT, KT::MR>(view(a, KT::MR * i, a.rs, 0, a.cs), pro, M - KT::MR * i, kc, kcp, dst);
}

template <class KT>
int threads_of(double fmas) {
  return threads_for(fmas, at::in_parallel_region() ? 1 : at::get_num_threads());
}

// ---- forward -------------------------------------------------------------------------------

// M-tiles per chunk of the walk: their A panels (all of k) fill KT::kChunkBytes of L2;
// KT::kGroupBytes holds the B of a group of lines (split.h: grouped_walk).
template <class KT>
int64_t chunk_tiles(int64_t kp) {
  return KT::kChunkBytes / (KT::MR * kp * static_cast<int64_t>(sizeof(typename KT::Elem)));
}

// A thread's A panels: the shared packed x (split by lines), or its own m-tiles packed now
// into its scratch (split by m-tiles). Returns the panel base for m-tile share.i0.
template <class KT>
const typename KT::Elem* own_panels(const Share& sh, const typename KT::Elem* shared, const Mat& a, const Mat& y,
                                    int dact, float slope, int64_t M, int64_t kc, int64_t kcp) {
  using E = typename KT::Elem;
  if (shared) return shared + sh.i0 * kcp * KT::MR;
  E* own = static_cast<E*>(scratch<KT>(3).get(sizeof(E) * std::max<int64_t>(1, sh.i1 - sh.i0) * kcp * KT::MR));
  for (int64_t i = sh.i0; i < sh.i1; ++i)
    pack_rows<KT>(a, y, dact, slope, M, i, kc, kcp, own + (i - sh.i0) * kcp * KT::MR);
  return own;
}

template <class KT>
void forward_share(const Forward& p, const Share& sh, const typename KT::Elem* shared_x) {
  using E = typename KT::Elem;
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Kp = w.nbc * bk;
  const int TW = KT::tile_width(bn);
  const int64_t esz = gemm::dtype_size(p.ydtype), vsz = gemm::dtype_size(w.vdtype);
  if (sh.empty()) return;
  const E* xp = own_panels<KT>(sh, shared_x, p.x, p.x, 0, 0.f, p.M, w.K, Kp);  // m-tile i at xp + (i - i0) ...
  auto nnz_of = [&](int64_t r) -> int64_t { return w.row_ptr[r + 1] - w.row_ptr[r]; };
  auto tiles_of = [&](int64_t r) { return std::min<int64_t>(bn / TW, ceil_div(w.N - r * bn, TW)); };  // inside N
  E* wp = nullptr;
  int64_t r_first = 0;
  static thread_local std::vector<int64_t> offset;  // of each row's panels in wp
  // The next group's kept blocks (contiguous in values) are prefetched into L2 while this
  // group computes, a share per tile, so packing them does not wait on DRAM (small M).
  const char* ahead = nullptr;
  int64_t ahead_left = 0, ahead_share = 0;
  auto prepare = [&](int64_t r0, int64_t r1, int64_t r2) {
    ahead = static_cast<const char*>(w.values) + w.row_ptr[r1] * bn * bk * vsz;
    ahead_left = (w.row_ptr[r2] - w.row_ptr[r1]) * bn * bk * vsz / 64;
    ahead_share = ceil_div(ahead_left, std::max<int64_t>(1, (sh.i1 - sh.i0) * (r1 - r0) * (bn / TW)));
    offset.assign(r1 - r0 + 1, 0);
    for (int64_t r = r0; r < r1; ++r) offset[r - r0 + 1] = offset[r - r0] + nnz_of(r) * bk * bn;
    wp = static_cast<E*>(scratch<KT>(2).get(sizeof(E) * std::max<int64_t>(1, offset[r1 - r0])));
    r_first = r0;
    for (int64_t r = r0; r < r1; ++r) {  // tile t of block jj of row r at offset + (t * nnz + jj) * bk * TW
      const int64_t j0 = w.row_ptr[r], nr = nnz_of(r);
      for (int64_t t = 0; t < tiles_of(r); ++t)
        for (int64_t jj = 0; jj < nr; ++jj) {
          const char* blk = static_cast<const char*>(w.values) + ((j0 + jj) * bn + t * TW) * bk * vsz;
          pack_tw<KT>(TW, Operand{blk, bk, 1, w.vdtype}, TW, bk, bk, wp + offset[r - r0] + (t * nr + jj) * bk * TW);
        }
    }
  };
  // One Segs / TileOut for all tiles, the per-tile fields set below (zeroing the ~200
  // bytes per tile showed up next to short tiles at high sparsity).
  Segs s;
  TileOut o;
  o.ldc = w.N, o.dtype = p.ydtype, o.act = p.act, o.slope = p.slope;
  s.a_step = bk * KT::MR, s.b_step = bk * TW, s.b_ld = TW, s.k = bk;
  auto body = [&](int64_t r, int64_t i) {
    const int64_t j0 = w.row_ptr[r], nr = nnz_of(r);
    const int rows = static_cast<int>(std::min<int64_t>(KT::MR, p.M - KT::MR * i));
    for (int64_t t = 0; t < tiles_of(r); ++t) {
      const int64_t n0 = r * bn + t * TW;
      s.a = xp + (i - sh.i0) * Kp * KT::MR, s.a_idx = w.col_idx + j0;
      s.b = wp + offset[r - r_first] + t * nr * bk * TW;
      s.n = static_cast<int>(nr);
      s.ahead = nullptr, s.ahead_lines = 0;
      if (ahead_left > 0 && nr > 0) {
        s.ahead = ahead, s.ahead_lines = static_cast<int>(std::min(ahead_share, ahead_left));
        ahead += 64 * s.ahead_lines, ahead_left -= s.ahead_lines;
      }
      o.rows = rows, o.cols = static_cast<int>(std::min<int64_t>(TW, w.N - n0));
      o.out = static_cast<char*>(p.y) + (KT::MR * i * w.N + n0) * esz;
      o.bias = p.bias ? p.bias + n0 : nullptr;
      KT::tile(rows, o.cols, TW)(s, o);
    }
  };
  grouped_walk(sh, KT::kGroupBytes / static_cast<int64_t>(sizeof(E)), chunk_tiles<KT>(Kp),
               [&](int64_t r) { return nnz_of(r) * bk * bn; }, prepare, body);
}

template <class KT>
void run_forward(const Forward& p) {
  using E = typename KT::Elem;
  const Structure& w = p.w;
  const int64_t mt = ceil_div(p.M, KT::MR), Kp = w.nbc * w.bk;
  const int T = threads_of<KT>(static_cast<double>(p.M) * w.nnz * w.bn * w.bk);
  const auto shares = split_work(w.nbr, mt, T, [&](int64_t r) {
    return (w.row_ptr[r + 1] - w.row_ptr[r]) * w.bk + kTileOverhead;
  });
  E* xs = nullptr;  // split by lines: x packed once, shared by all threads
  if (!shares[0].by_m) {
    xs = static_cast<E*>(scratch<KT>(0).get(sizeof(E) * mt * Kp * KT::MR));
    parallel_for(0, mt, std::max(ceil_div(mt, T), 2048 / Kp), [&](int64_t b, int64_t e) {  // >= ~64 KiB a task
      for (int64_t i = b; i < e; ++i) pack_rows<KT>(p.x, p.x, 0, 0.f, p.M, i, w.K, Kp, xs + i * Kp * KT::MR);
    });
  }
  parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) forward_share<KT>(p, shares[t], xs);
  });
}

// ---- backward ------------------------------------------------------------------------------

template <class KT>
void grad_x_share(const Backward& p, const Share& sh, const typename KT::Elem* shared_g) {
  using E = typename KT::Elem;
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Np = w.nbr * bn;
  const int TW = KT::tile_width(bk);
  const int64_t esz = gemm::dtype_size(p.x.dtype), vsz = gemm::dtype_size(w.vdtype);
  const bool in_place = KT::b_in_place(w);
  if (sh.empty()) return;
  const E* gp = own_panels<KT>(sh, shared_g, p.g, p.y, p.dact, p.slope, p.M, w.N, Np);  // m-tile i at (i - i0)
  auto nnz_of = [&](int64_t c) -> int64_t { return w.t_row_ptr[c + 1] - w.t_row_ptr[c]; };
  auto tiles_of = [&](int64_t c) { return std::min<int64_t>(bk / TW, ceil_div(w.K - c * bk, TW)); };  // inside K
  E* bp = nullptr;
  int64_t c_first = 0;
  static thread_local std::vector<int64_t> offset;  // of each column's panels in bp
  auto prepare = [&](int64_t c0, int64_t c1, int64_t) {
    c_first = c0;
    if (in_place) return;
    offset.assign(c1 - c0 + 1, 0);
    for (int64_t c = c0; c < c1; ++c) offset[c - c0 + 1] = offset[c - c0] + nnz_of(c) * bk * bn;
    bp = static_cast<E*>(scratch<KT>(2).get(sizeof(E) * std::max<int64_t>(1, offset[c1 - c0])));
    for (int64_t c = c0; c < c1; ++c) {  // tile t of block ii of column c at offset + (t * nnz + ii) * bn * TW
      const int64_t t0 = w.t_row_ptr[c], nc = nnz_of(c);
      for (int64_t t = 0; t < tiles_of(c); ++t)
        for (int64_t ii = 0; ii < nc; ++ii) {
          const char* blk = static_cast<const char*>(w.values) + (w.t_block[t0 + ii] * bn * bk + t * TW) * vsz;
          pack_tw<KT>(TW, Operand{blk, 1, bk, w.vdtype}, TW, bn, bn, bp + offset[c - c0] + (t * nc + ii) * bn * TW);
        }
    }
  };
  Segs s;  // reused by every tile, as in forward_share
  TileOut o;
  o.ldc = w.K, o.dtype = p.x.dtype;
  s.a_step = bn * KT::MR, s.k = bn;
  if (in_place) s.b_step = bn * bk, s.b_ld = bk;  // values[t_block[..]] rows are B rows of stride bk
  else s.b_step = bn * TW, s.b_ld = TW;
  auto body = [&](int64_t c, int64_t i) {
    const int64_t t0 = w.t_row_ptr[c], nc = nnz_of(c);
    const int rows = static_cast<int>(std::min<int64_t>(KT::MR, p.M - KT::MR * i));
    for (int64_t t = 0; t < tiles_of(c); ++t) {
      const int64_t k0 = c * bk + t * TW;
      s.a = gp + (i - sh.i0) * Np * KT::MR, s.a_idx = w.t_col_idx + t0;
      if (in_place) s.b = static_cast<const E*>(w.values) + t * TW, s.b_idx = w.t_block + t0;
      else s.b = bp + offset[c - c_first] + t * nc * bn * TW;
      s.n = static_cast<int>(nc);
      o.rows = rows, o.cols = static_cast<int>(std::min<int64_t>(TW, w.K - k0));
      o.out = static_cast<char*>(p.gx) + (KT::MR * i * w.K + k0) * esz;
      KT::tile(rows, o.cols, static_cast<int>(s.b_ld))(s, o);
    }
  };
  grouped_walk(sh, KT::kGroupBytes / static_cast<int64_t>(sizeof(E)), chunk_tiles<KT>(Np),
               [&](int64_t c) { return nnz_of(c) * bk * bn; }, prepare, body);
}

// g^T panels per block row: ceil(bn / MR), the last one short (zero lanes past the block)
// when MR does not divide bn (AVX2: MR = 6).
template <class KT>
int64_t q_per_block(int64_t bn) {
  return ceil_div(bn, KT::MR);
}

// Batch rows [m0, m0 + kc) of every g^T panel, [nbr * q_per][Mp][MR] (prologue applied):
// the rows of g and y are read once, front to back, for all panels (kcp: kc rounded to KU
// at the end). Panel (r, q) holds rows [q MR, q MR + MR) of block row r, clipped to it.
template <class KT>
void pack_g_t(const Backward& p, int64_t m0, int64_t kc, int64_t kcp, int64_t Mp, typename KT::Elem* gt) {
  const int64_t bn = p.w.bn, q_per = q_per_block<KT>(bn);
  for (int64_t pq = 0; pq < p.w.nbr * q_per; ++pq) {
    const int64_t rq = (pq % q_per) * KT::MR, n0 = (pq / q_per) * bn + rq;
    Prologue pro;
    pro.act = p.dact, pro.slope = p.slope;
    if (p.dact) pro.y = view(p.y, n0, p.y.cs, m0, p.y.rs);
    pack<KT, KT::MR>(view(p.g, n0, p.g.cs, m0, p.g.rs), pro, std::min(bn - rq, p.w.N - n0), kc, kcp,
                     gt + (pq * Mp + m0) * KT::MR);
  }
}

// grad_values for units [u0, u1) of (kept block j, MR of its rows q): per block, the batch is
// walked in chunks that keep one x panel chunk ([kc][TW], ~16 KiB) in L1 across the block's
// row tiles, with fp32 partial sums between chunks (in gv itself when fp32).
template <class KT>
void grad_values_range(const Backward& p, const typename KT::Elem* gt, const typename KT::Elem* xq, int64_t u0,
                       int64_t u1) {
  using E = typename KT::Elem;
  const Structure& w = p.w;
  const int64_t bn = w.bn, bk = w.bk, Mp = round_up(p.M, KT::KU), q_per = q_per_block<KT>(bn);
  const int TW = KT::tile_width(bk);
  const int64_t kc_blk = std::max<int64_t>(KT::KU, round_up((16 << 10) / (TW * sizeof(E)), KT::KU));
  const int64_t vsz = gemm::dtype_size(w.vdtype);
  const bool f32 = w.vdtype == DType::kF32;
  float* part = f32 ? nullptr : static_cast<float*>(scratch<KT>(2).get(sizeof(float) * bn * bk));
  for (int64_t u = u0; u < u1;) {
    const int64_t j = u / q_per, qa = u % q_per, qb = std::min(q_per, qa + (u1 - u));
    u += qb - qa;
    const int64_t r = std::upper_bound(w.row_ptr, w.row_ptr + w.nbr + 1, static_cast<int32_t>(j)) - w.row_ptr - 1;
    const int64_t c = w.col_idx[j];
    char* blk = static_cast<char*>(p.gv) + j * bn * bk * vsz;
    for (int64_t t = 0; t < bk / TW; ++t) {
      const E* xpanel = xq + ((c * bk) / TW + t) * Mp * TW;
      for (int64_t k0 = 0; k0 < Mp; k0 += kc_blk) {
        const int64_t kc = std::min(kc_blk, Mp - k0);
        for (int64_t q = qa; q < qb; ++q) {
          Segs s;
          s.a = gt + ((r * q_per + q) * Mp + k0) * KT::MR, s.n = 1, s.k = kc;
          s.b = xpanel + k0 * TW, s.b_ld = TW;
          TileOut o;
          o.rows = static_cast<int>(std::min<int64_t>(KT::MR, bn - q * KT::MR)), o.cols = TW;
          o.first = k0 == 0, o.last = k0 + kc >= Mp;
          o.out = blk + ((q * KT::MR) * bk + t * TW) * vsz, o.ldc = bk, o.dtype = w.vdtype;
          o.acc = f32 ? static_cast<float*>(o.out) : part + (q * KT::MR) * bk + t * TW, o.ld_acc = bk;
          KT::tile(o.rows, TW, TW)(s, o);
        }
      }
    }
  }
}

template <class KT>
void run_backward(const Backward& p) {
  using E = typename KT::Elem;
  const Structure& w = p.w;
  const int64_t M = p.M, mt = ceil_div(M, KT::MR), Np = w.nbr * w.bn, Kp = w.nbc * w.bk, Mp = round_up(M, KT::KU);
  const int TWk = KT::tile_width(w.bk);
  const double fmas = static_cast<double>(M) * w.nnz * w.bn * w.bk * ((p.gx ? 1 : 0) + (p.gv ? 1 : 0));
  const int T = threads_of<KT>(fmas);
  std::vector<Share> xs(T);  // grad_x shares (empty when not requested)
  if (p.gx) xs = split_work(w.nbc, mt, T, [&](int64_t c) {
    return (w.t_row_ptr[c + 1] - w.t_row_ptr[c]) * w.bn + kTileOverhead;
  });
  std::vector<int64_t> vb(T + 1, 0);
  if (p.gv) vb = balanced_bounds(w.nnz, q_per_block<KT>(w.bn), T, [](int64_t) { return 1; });
  // Packing, shared by all threads: g row panels for grad_x when split by block columns
  // (split by m-tiles, each thread packs its own), x column panels and g^T panels for
  // grad_values.
  constexpr int64_t kGtRows = 16;  // batch rows per g^T packing task
  const int64_t gtiles = p.gx && !xs[0].by_m ? mt : 0;
  const int64_t xpanels = p.gv ? Kp / TWk : 0, gtchunks = p.gv ? ceil_div(Mp, kGtRows) : 0;
  E* gp = gtiles ? static_cast<E*>(scratch<KT>(0).get(sizeof(E) * mt * Np * KT::MR)) : nullptr;
  E* xq = p.gv ? static_cast<E*>(scratch<KT>(1).get(sizeof(E) * xpanels * Mp * TWk)) : nullptr;
  E* gt = p.gv ? static_cast<E*>(scratch<KT>(4).get(sizeof(E) * w.nbr * q_per_block<KT>(w.bn) * KT::MR * Mp)) : nullptr;
  const int64_t tasks = gtiles + xpanels + gtchunks;
  parallel_for(0, tasks, T == 1 ? std::max<int64_t>(1, tasks) : 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (i < gtiles) {
        pack_rows<KT>(p.g, p.y, p.dact, p.slope, M, i, w.N, Np, gp + i * Np * KT::MR);
      } else if (i < gtiles + xpanels) {
        const int64_t c0 = (i - gtiles) * TWk;
        pack_tw<KT>(TWk, view(p.x, c0, p.x.cs, 0, p.x.rs), w.K - c0, M, Mp, xq + (i - gtiles) * Mp * TWk);
      } else {
        const int64_t m0 = (i - gtiles - xpanels) * kGtRows;
        pack_g_t<KT>(p, m0, std::max<int64_t>(0, std::min(kGtRows, M - m0)), std::min(kGtRows, Mp - m0), Mp, gt);
      }
    }
  });
  parallel_for(0, T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      if (p.gx) grad_x_share<KT>(p, xs[t], gp);
      if (p.gv) grad_values_range<KT>(p, gt, xq, vb[t], vb[t + 1]);
    }
  });
}

}  // namespace
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan


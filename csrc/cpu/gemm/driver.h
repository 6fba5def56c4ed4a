// The blocked GEMM driver (BLIS-style loops around a register-tiled micro-kernel),
// templated on a kernel "traits" struct so every ISA path shares the same blocking:
//
//   struct Traits {
//     using Elem = float | uint16_t;            // packed element type
//     static constexpr int MR, NR;              // micro-tile (rows of A, columns of B)
//     static constexpr int KU;                  // k unit: packed k blocks are padded to it
//     static constexpr int NU;                  // column granularity of the thread split
//     static constexpr int64_t KC, MC, NC;      // cache blocks (see each traits' comment)
//     static void pack_a(const Problem&, int64_t m0, int rows, int64_t k0, int64_t kc,
//                        int64_t kcp, Elem* dst);   // one MR x kcp panel of prologue(A)
//     static void pack_b(const Problem&, int64_t k0, int64_t kc, int64_t kcp, int64_t n0,
//                        int cols, Elem* dst);      // one kcp x NR panel of B
//     static void kernel(int64_t kcp, const Elem* a, const Elem* b, const TileOut&);
//     static Region b_region(const Problem&, int64_t k0, int64_t kc, int64_t n0, int cols);
//                                               // what pack_b will read (for prefetch)
//     static void thread_begin(); static void thread_end();  // e.g. AMX tile config
//   };
//
// Loops of one thread over its rectangle [m0, m1) x [n0, n1) of C:
//
//   for jc in n, step NC                 B block columns
//     for pc in k, step ~KC              k block (balanced: K split into equal blocks)
//       for ic in m, step MC             A block rows: packed whole into scratch (L2)
//         for jr in jc block, step NR    B micro-panel: packed on the first ic pass, as it
//                                        is first needed, then reused from cache (with one
//                                        ic pass only one panel buffer is kept, hot in L1/L2)
//           for ir in ic block, step MR  micro-kernel; epilogue on the last k block
//
// While the micro-kernels run on B micro-panel jr, they prefetch (spread over their k
// steps, into L2) what comes next: in the first ic pass the source of panel jr + 1, so that
// reading the weight from DRAM / L3 overlaps compute instead of stalling the next pack_b
// (with a small M, few kernels per panel, the transposing pack of the weight would
// otherwise cost ~25% of the run time); in later passes the packed panel jr + 1 (L3).
//
// The thread split gives each thread one rectangle: a cost model over the ways of
// factoring the thread count into (row parts x column parts) counts the padded FMAs and
// the packing each thread does. With M small (a GAN batch of 64) it splits N, so each
// thread packs only its own slab of the weight and both threads share the small A.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "../parallel.h"
#include "tile.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

// Per-thread growable, 64-byte aligned scratch (packed panels, fp32 partial sums).
// The OpenMP workers behind parallel_for (parallel.h) persist: steady state allocates nothing.
struct Scratch {
  void* ptr = nullptr;
  size_t bytes = 0;
  ~Scratch() { std::free(ptr); }
  void* get(size_t want) {
    if (want > bytes) {
      std::free(ptr);
      bytes = static_cast<size_t>(round_up(static_cast<int64_t>(want), 4096));
      ptr = std::aligned_alloc(64, bytes);
      if (ptr == nullptr) throw std::bad_alloc();
    }
    return ptr;
  }
};

template <class KT>
Scratch& scratch(int slot) {
  static thread_local Scratch s[3];
  return s[slot];
}

struct Split {
  int tm = 1, tn = 1;
};

// Splits `units` units into `parts` near-equal parts; part i is [lo(i), lo(i+1)).
inline int64_t split_lo(int64_t units, int parts, int i) { return units * i / parts; }

inline Split choose_split(int64_t M, int64_t N, int64_t K, int MR, int NU, int threads) {
  Split best;
  if (threads <= 1) return best;
  double best_cost = -1;
  const int64_t mu = ceil_div(M, MR), nu = ceil_div(N, NU);
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    const int tn = threads / tm;
    if (tm > mu || tn > nu) continue;
    const double rows = static_cast<double>(ceil_div(mu, tm) * MR);
    const double cols = static_cast<double>(ceil_div(nu, tn) * NU);
    // FMAs of the busiest thread, plus ~4 FMA-equivalents per element it packs.
    const double cost = rows * cols * K + 4.0 * (rows + cols) * K;
    if (best_cost < 0 || cost < best_cost * 0.999) best_cost = cost, best = {tm, tn};
  }
  return best;
}

// Before the kernel of a tile runs, prefetch into L2 what the NEXT tile will read first
// (its fp32 partial sums, unless it starts the k loop) and write last (its C rows, on the
// last k block): partial sums and C of a large problem live in L3 / DRAM, and a kernel
// that waits for them at its start or end stalls ~5% of its time. One kernel call
// (thousands of cycles) is plenty of lead.
template <int MR, int NR>
inline void prefetch_rows(const char* base, int64_t stride, int64_t rows, int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(base + r * stride + b, 0, 2);
}

template <int MR, int NR>
inline void prefetch_next_tile_impl(const Problem& p, const TileOut& o, int64_t ic, int64_t mc, int64_t jc, int64_t jr,
                                    int64_t nc, int64_t ir, float* part, int64_t m0, int64_t ld_part) {
  int64_t m, n;
  if (ir + MR < mc) {
    m = ic + ir + MR, n = jc + jr;
  } else if (jr + NR < nc) {
    m = ic, n = jc + jr + NR;
  } else {
    return;
  }
  const int64_t rows = std::min<int64_t>(MR, ic + mc - m), cols = std::min<int64_t>(NR, jc + nc - n);
  const int csz = dtype_size(p.c_dtype);
  if (!o.first) {
    const float* acc = p.c_dtype == DType::kF32 ? static_cast<const float*>(p.c) + m * p.ldc + n
                                                : part + (m - m0) * ld_part + (n - jc);
    prefetch_rows<MR, NR>(reinterpret_cast<const char*>(acc), (p.c_dtype == DType::kF32 ? p.ldc : ld_part) * 4,
                          rows, cols * 4);
  }
  if (o.last && (o.first || p.c_dtype != DType::kF32))
    prefetch_rows<MR, NR>(static_cast<const char*>(p.c) + (m * p.ldc + n) * csz, p.ldc * csz, rows, cols * csz);
}

template <class KT>
void run_rect(const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  auto prefetch_next_tile = [](const Problem& q, const TileOut& o, int64_t ic, int64_t mc, int64_t jc, int64_t jr,
                               int64_t nc, int64_t ir, float* part, int64_t m0_, int64_t ld_part) {
    prefetch_next_tile_impl<KT::MR, KT::NR>(q, o, ic, mc, jc, jr, nc, ir, part, m0_, ld_part);
  };
  using E = typename KT::Elem;
  constexpr int MR = KT::MR, NR = KT::NR, KU = KT::KU;
  const int64_t K = p.K;
  const int64_t nkb = ceil_div(K, KT::KC);
  // 16-bit C with several k blocks keeps fp32 partial sums for all of this thread's rows
  // x one column block: bound that scratch (4 MiB at NC = 1024) by taking the rows in
  // chunks; B is then packed once per chunk, negligible against 1024 rows of FMAs.
  constexpr int64_t kPartRows = 1024;
  if (nkb > 1 && p.c_dtype != DType::kF32 && m1 - m0 > kPartRows) {
    for (int64_t c0 = m0; c0 < m1; c0 += kPartRows) run_rect<KT>(p, c0, std::min(m1, c0 + kPartRows), n0, n1);
    return;
  }
  const int64_t kc_blk = round_up(ceil_div(K, nkb), KU);
  // Blocks are whole numbers of micro-panels (the packers write full MR / NR panels).
  const int64_t mc_blk = std::min<int64_t>(round_up(KT::MC, MR), round_up(m1 - m0, MR));
  const int64_t nc_blk = std::min<int64_t>(round_up(KT::NC, NR), round_up(n1 - n0, NR));
  E* ap = static_cast<E*>(scratch<KT>(0).get(sizeof(E) * mc_blk * kc_blk));
  E* bp = static_cast<E*>(scratch<KT>(1).get(sizeof(E) * (m1 - m0 <= mc_blk ? NR : nc_blk) * kc_blk));
  const int csz = dtype_size(p.c_dtype);
  const bool one_ic = m1 - m0 <= mc_blk;
  // Partial sums live in C when C is fp32, else in an fp32 scratch over this thread's rows.
  float* part = nullptr;
  int64_t ld_part = 0;
  if (nkb > 1 && p.c_dtype != DType::kF32) {
    ld_part = round_up(nc_blk, 16);
    part = static_cast<float*>(scratch<KT>(2).get(sizeof(float) * (m1 - m0) * ld_part));
  }
  for (int64_t jc = n0; jc < n1; jc += nc_blk) {
    const int64_t nc = std::min(nc_blk, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kc_blk) {
      const int64_t kc = std::min(kc_blk, K - pc), kcp = round_up(kc, KU);
      for (int64_t ic = m0; ic < m1; ic += mc_blk) {
        const int64_t mc = std::min(mc_blk, m1 - ic);
        for (int64_t ir = 0; ir < mc; ir += MR)
          KT::pack_a(p, ic + ir, static_cast<int>(std::min<int64_t>(MR, mc - ir)), pc, kc, kcp, ap + ir * kcp);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const int cols = static_cast<int>(std::min<int64_t>(NR, nc - jr));
          // With a single ic pass every B micro-panel is used right after it is packed:
          // one panel-sized buffer then stays hot in L1 / L2 instead of a block in L3.
          E* b_panel = one_ic ? bp : bp + jr * kcp;
          Region next;  // prefetched, spread over this panel's kernels
          if (jr + NR < nc) {
            if (ic == m0) {  // the source of the next panel, which the next pack_b reads
              next = KT::b_region(p, pc, kc, jc + jr + NR, static_cast<int>(std::min<int64_t>(NR, nc - jr - NR)));
            } else {  // the next packed panel, read back from L3 by the next kernels
              next.base = reinterpret_cast<const char*>(b_panel + NR * kcp);
              next.rows = 1, next.lines = static_cast<int>(ceil_div(NR * kcp * sizeof(E), 64));
            }
          }
          const int64_t pf_per_call = ceil_div(next.rows * next.lines, ceil_div(mc, MR));
          if (ic == m0) KT::pack_b(p, pc, kc, kcp, jc + jr, cols, b_panel);
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int64_t m = ic + ir, n = jc + jr;
            TileOut o;
            o.rows = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            o.cols = cols;
            o.first = pc == 0;
            o.last = pc + kc >= K;
            o.out = static_cast<char*>(p.c) + (m * p.ldc + n) * csz;
            o.ldc = p.ldc;
            o.dtype = p.c_dtype;
            if (p.c_dtype == DType::kF32) {
              o.acc = static_cast<float*>(o.out);
              o.ld_acc = p.ldc;
            } else if (part != nullptr) {
              o.acc = part + (m - m0) * ld_part + (n - jc);
              o.ld_acc = ld_part;
            }
            o.bias = p.bias ? p.bias + n : nullptr;
            o.act = p.act;
            o.slope = p.slope;
            if (next.rows > 0) {
              const int64_t first = (ir / MR) * pf_per_call;
              const int64_t count = std::min(pf_per_call, next.rows * next.lines - first);
              if (count > 0) {
                o.pf_row = next.base + (first / next.lines) * next.stride;
                o.pf_stride = next.stride;
                o.pf_lpr = next.lines;
                o.pf_col = static_cast<int>(first % next.lines);
                o.pf_count = static_cast<int>(count);
              }
            }
            prefetch_next_tile(p, o, ic, mc, jc, jr, nc, ir, part, m0, ld_part);
            KT::kernel(kcp, ap + ir * kcp, b_panel, o);
          }
        }
      }
    }
  }
}

// C = epilogue(prologue(A) @ B) on the traits' kernel, over torch's intra-op threads
// (parallel.h: at::parallel_for's contract, on torch's OpenMP team).
template <class KT>
void drive(const Problem& p) {
  if (p.M <= 0 || p.N <= 0 || p.K <= 0) return;  // run() handles K == 0
  int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
  // Below ~16k multiply-adds a thread hand-off costs more than it saves.
  if (static_cast<double>(p.M) * p.N * p.K < 16384.0) threads = 1;
  const Split s = choose_split(p.M, p.N, p.K, KT::MR, KT::NU, threads);
  const int64_t mu = ceil_div(p.M, KT::MR), nu = ceil_div(p.N, KT::NU);
  parallel_for(0, s.tm * s.tn, 1, [&](int64_t begin, int64_t end) {
    struct Guard {  // per-thread setup (AMX: tile config) and teardown, even on throw
      Guard() { KT::thread_begin(); }
      ~Guard() { KT::thread_end(); }
    } guard;
    for (int64_t t = begin; t < end; ++t) {
      const int i = static_cast<int>(t / s.tn), j = static_cast<int>(t % s.tn);
      const int64_t m0 = split_lo(mu, s.tm, i) * KT::MR, m1 = std::min(p.M, split_lo(mu, s.tm, i + 1) * KT::MR);
      const int64_t n0 = split_lo(nu, s.tn, j) * KT::NU, n1 = std::min(p.N, split_lo(nu, s.tn, j + 1) * KT::NU);
      if (m0 < m1 && n0 < n1) run_rect<KT>(p, m0, m1, n0, n1);
    }
  });
}

}  // namespace
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

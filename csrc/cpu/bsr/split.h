// How the block-sparse kernels split their work over threads, and the cache-blocked walk
// of one thread's share. Portable C++ (used by every path).
//
// The forward (and grad_x) work is a grid of units (line l, m-tile i): a line is a block
// row of W (grad_x: a block column), an m-tile 8 batch rows (the micro-kernel's A panel);
// unit (l, i) costs w_l = kept blocks of l * their k + kTileOverhead, the same for every
// m-tile of the line. Two ways to split it, no atomics in either (every output tile belongs
// to exactly one thread):
//
//   by lines (small batch): the units in row-major order, u = l * mt + i, cut into T
//     contiguous ranges of equal cost (balanced_bounds). A thread gets contiguous lines,
//     the first and last possibly shared with its neighbour along the batch, so a skewed
//     pattern (one dense row, many empty ones) is cut inside the dense row rather than
//     given whole to one thread. Every thread reads all of the packed x: it is packed once,
//     by all threads, before the walk.
//   by m-tiles (large batch, >= kMinTilesPerThread per thread): each thread all lines and
//     a contiguous range of m-tiles (every m-tile costs the same, so equal counts balance
//     any sparsity pattern). A thread then packs and reads only its own rows of x - no
//     shared buffer written by one core and read by another, no separate packing pass -
//     at the price of packing the kept blocks once per thread, which is < ~1/16 of its
//     multiply-adds at this batch size.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

// Per-tile cost besides the FMAs (epilogue, stores, the segment walk), in k steps; it also
// gives empty lines (which still write act(bias)) a weight.
constexpr int64_t kTileOverhead = 8;
constexpr int64_t kMinTilesPerThread = 32;  // m-tiles (256 batch rows) for the split by m-tiles

// Threads for a problem of `fmas` multiply-adds.
inline int threads_for(double fmas, int available) {
  if (fmas < (1 << 20)) return 1;  // ~20-40 us on one core: a second thread costs more than it saves
  return std::max(1, available);
}

// Units [0, lines * tiles): unit u = line * tiles + tile, each costing cost(line) (all
// tiles of a line cost the same). Splits them into `parts` contiguous ranges of equal
// cost; bounds[t]..bounds[t+1] is part t. `cost` is evaluated once per line.
template <class Cost>
std::vector<int64_t> balanced_bounds(int64_t lines, int64_t tiles, int parts, const Cost& cost) {
  std::vector<double> prefix(lines + 1, 0.0);  // cost of lines [0, l), all their tiles
  for (int64_t l = 0; l < lines; ++l) prefix[l + 1] = prefix[l] + static_cast<double>(cost(l)) * tiles;
  std::vector<int64_t> bounds(parts + 1, lines * tiles);
  bounds[0] = 0;
  const double total = prefix[lines];
  int64_t l = 0;
  for (int t = 1; t < parts; ++t) {
    const double target = total * t / parts;
    while (l < lines && prefix[l + 1] <= target) ++l;  // line l holds the cut
    int64_t u = l * tiles;
    if (l < lines) {
      const double per_tile = (prefix[l + 1] - prefix[l]) / tiles;
      u += std::min<int64_t>(tiles, static_cast<int64_t>((target - prefix[l]) / per_tile + 0.5));
    }
    bounds[t] = std::max(bounds[t - 1], std::min(u, lines * tiles));
  }
  return bounds;
}

// One thread's units: the box lines [l0, l1) x m-tiles [i0, i1), all of it (by_m) or only
// the row-major range u = l * mt + i in [u0, u1) inside it.
struct Share {
  bool by_m = true;
  int64_t mt = 0, l0 = 0, l1 = 0, i0 = 0, i1 = 0, u0 = 0, u1 = 0;
  bool has(int64_t l, int64_t i) const {
    if (by_m) return true;
    const int64_t u = l * mt + i;
    return u >= u0 && u < u1;
  }
  bool empty() const { return l0 >= l1 || i0 >= i1; }
};

template <class Cost>
std::vector<Share> split_work(int64_t lines, int64_t mt, int T, const Cost& cost) {
  std::vector<Share> shares(T);
  if (T == 1 || mt >= kMinTilesPerThread * T) {
    for (int t = 0; t < T; ++t) {
      Share& s = shares[t];
      s.by_m = true, s.mt = mt, s.l0 = 0, s.l1 = lines, s.i0 = mt * t / T, s.i1 = mt * (t + 1) / T;
    }
    return shares;
  }
  const std::vector<int64_t> b = balanced_bounds(lines, mt, T, cost);
  for (int t = 0; t < T; ++t) {
    Share& s = shares[t];
    s.by_m = false, s.mt = mt, s.u0 = b[t], s.u1 = b[t + 1], s.i0 = 0, s.i1 = mt;
    if (s.u0 < s.u1) s.l0 = s.u0 / mt, s.l1 = (s.u1 - 1) / mt + 1;
  }
  return shares;
}

// Walks a share blocked for the caches:
//   for each group of consecutive lines whose B data (bytes(l)) fits `budget` (>= 1 line):
//     prepare(g0, g1, g2)            [g0, g1) the group, [g1, g2) the next one (to prefetch)
//     for each chunk of `chunk` m-tiles:
//       for each line l of the group: for each m-tile i of the chunk: body(l, i)
// so the group's B stays in L2 across all m-tiles (read once from memory), the chunk's A
// panels (x rows, all of K) stay in L2 across the group's lines (read once per group), and
// one line's B stays in L1 across the m-tiles of a chunk.
template <class Bytes, class Prepare, class Body>
void grouped_walk(const Share& s, int64_t budget, int64_t chunk, const Bytes& bytes, const Prepare& prepare,
                  const Body& body) {
  if (s.empty()) return;
  auto group_end = [&](int64_t g0) {
    int64_t g1 = g0 + 1, size = bytes(g0);
    while (g1 < s.l1 && size + bytes(g1) <= budget) size += bytes(g1++);
    return g1;
  };
  chunk = std::max<int64_t>(1, chunk);
  for (int64_t g0 = s.l0, g1 = group_end(g0); g0 < s.l1;) {
    const int64_t g2 = g1 < s.l1 ? group_end(g1) : g1;
    prepare(g0, g1, g2);
    for (int64_t ic = s.i0; ic < s.i1; ic += chunk)
      for (int64_t l = g0; l < g1; ++l)
        for (int64_t i = ic; i < std::min(s.i1, ic + chunk); ++i)
          if (s.has(l, i)) body(l, i);
    g0 = g1, g1 = g2;
  }
}

}  // namespace
}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

// The contract between the block-sparse driver (driver.h) and its micro-tiles (one per
// ISA: tile_avx512.h, tile_avx2.h): a tile of the output accumulated in registers over a
// LIST of (A segment, B segment) pairs, then the GEMM core's register epilogue.
//   A: an MR-lane panel ([k][MR] fp32, or [k/2][MR] bf16 pairs); segment s starts at
//      a + a_idx[s] * a_step (a block column of the packed x, or block row of packed g)
//   B: a panel of columns with row stride b_ld elements ([k][b_ld] fp32, or pairs);
//      segment s at b + (b_idx ? b_idx[s] : s) * b_step (packed kept blocks, or values
//      read in place)
// so the kept blocks of a block row are consumed without leaving the registers: no
// partial sums are stored between blocks. (A driver may still split a long k into
// chunks with fp32 partial sums, TileOut::first / last, as the GEMM core does.)
//
// Also here, portable: the tiles' software prefetch streams. While segment s runs, the A
// segment of s + 1 (scattered in the packed x) is prefetched into L1, spread over the
// first half of its k steps (B is a contiguous stream or a block the hardware prefetchers
// follow); the driver may also hand each tile a share of what it reads next, prefetched
// into L2 (Segs::ahead).
#pragma once

#include <cstdint>

namespace fastgan {
namespace cpu {
namespace bsr {

struct Segs {
  const void* a = nullptr;
  const int32_t* a_idx = nullptr;  // null: segment s at a + s * a_step
  int64_t a_step = 0;              // elements
  const void* b = nullptr;
  const int32_t* b_idx = nullptr;  // null: segment s at b + s * b_step
  int64_t b_step = 0;
  int64_t b_ld = 0;  // B row stride in elements (AVX-512 tiles: also their template BS)
  int n = 0;         // segments
  int64_t k = 0;     // k per segment (even for bf16)
  // Optional: `ahead_lines` cache lines from `ahead` (what the driver reads next, e.g. the
  // next group's kept blocks) to prefetch into L2 over this tile's k steps.
  const char* ahead = nullptr;
  int ahead_lines = 0;
};

template <class E>
static inline __attribute__((always_inline)) const E* seg_a(const Segs& s, int i) {
  return static_cast<const E*>(s.a) + (s.a_idx ? static_cast<int64_t>(s.a_idx[i]) : i) * s.a_step;
}
template <class E>
static inline __attribute__((always_inline)) const E* seg_b(const Segs& s, int i) {
  return static_cast<const E*>(s.b) + (s.b_idx ? static_cast<int64_t>(s.b_idx[i]) : i) * s.b_step;
}

// One prefetch stream: `left` lines from p, one per `every` k steps. LOCALITY is
// __builtin_prefetch's: 3 = all levels (L1, x86 T0), 2 = L2 and out (T1).
template <int LOCALITY>
struct Stream {
  const char* p = nullptr;
  int left = 0, every = 1, wait = 0;
  __attribute__((always_inline)) void aim(const char* from, int lines, int64_t steps) {
    p = from, left = lines, wait = 0;
    every = lines > 0 ? static_cast<int>(steps / (2 * lines)) : 1;  // spread over the first half
    if (every < 1) every = 1;
  }
  __attribute__((always_inline)) void step() {
    if (left <= 0 || --wait > 0) return;
    wait = every;
    __builtin_prefetch(p, 0, LOCALITY);
    p += 64;
    --left;
  }
};

// A tile's prefetches: the next A segment (scattered in the packed x) into L1, and the
// driver's look-ahead into L2.
struct TilePrefetch {
  Stream<3> next_a;
  Stream<2> ahead;
  __attribute__((always_inline)) void step() {
    next_a.step();
    ahead.step();
  }
};

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

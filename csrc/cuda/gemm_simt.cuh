// SIMT register-tiled GEMM: the exact-fp32 path (no TF32), and the fp16 / bf16 fallback
// on GPUs (or builds) without sm_80 tensor cores. Solves common.cuh's GemmProblem.
//
// Block tile BM x BN x BK (BK = 8), 256 threads in a (BM/TM) x (BN/TN) grid; thread
// (ty, tx) accumulates a TM x TN micro-tile in registers, made of 4-row / 4-column groups
// spaced BM/(TM/4) and BN/(TN/4) apart, so that a warp's float4 shared-memory reads are
// either broadcasts (A: a warp spans 2 values of ty) or 16 consecutive float4 (B):
// conflict-free.
//   SimtLarge: 128 x 128, 8 x 8 per thread (rows ty*4 + {0..3} and 64 + ty*4 + {0..3}).
//   SimtSmall:  64 x  64, 4 x 4 per thread (more blocks for small problems).
//
// Both operand tiles are stored transposed as fp32, [BK][rows + 4], so the inner loop
// reads a column of A and a column of B per k. Loads go through registers with any strides
// (predicated, zero past the edges), mapped so that consecutive threads read consecutive
// addresses of whichever index is contiguous (p.a_ifast / p.b_ifast), and the prologue
// (grad * act'(y)) is applied on the way into shared memory. Two stages: the loads of
// k-tile kt+1 are in flight while k-tile kt is computed.
#pragma once

#include "common.cuh"

namespace fastgan {
namespace cuda {

template <int BM_, int BN_, int TM_, int TN_>
struct SimtTile {
  static constexpr int BM = BM_, BN = BN_, BK = 8, TM = TM_, TN = TN_;
  static constexpr int THREADS_N = BN / TN, THREADS_M = BM / TM;
  static constexpr int THREADS = THREADS_M * THREADS_N;
  static constexpr int GM = TM / 4, GN = TN / 4;                 // 4-wide groups per thread
  static constexpr int STEP_M = BM / GM, STEP_N = BN / GN;       // distance between groups
  static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of 4-wide groups");
};
using SimtLarge = SimtTile<128, 128, 8, 8>;
using SimtSmall = SimtTile<64, 64, 4, 4>;

// Loads the ROWS x BK tile (rows row0.., reduction index kt*BK..) of one operand into
// smem [BK][ROWS + 4] as fp32. Element e = t + j*THREADS of the tile is (i = e % ROWS,
// r = e / ROWS) when the row index is contiguous in memory, else (i = e / BK, r = e % BK).
// The 4-float pad makes both store patterns conflict-free ((4r + i) mod 32 distinct).
template <typename T, int ROWS, int BK, int THREADS, bool PROLOGUE>
struct SimtTileLoader {
  using Raw = typename Num<T>::Raw;
  static constexpr int kLd = ROWS + 4;
  static constexpr int kPer = ROWS * BK / THREADS;
  static_assert((ROWS * BK) % THREADS == 0, "tile elements must divide evenly among threads");

  const Raw* src;
  int64_t si, sr, ext_i, ext_r, row0;
  bool ifast;
  GradPrologue<T> pro;
  Raw stage[kPer];
  Raw ystage[PROLOGUE ? kPer : 1];

  __device__ SimtTileLoader(const Raw* p, int64_t si_, int64_t sr_, int64_t ext_i_, int64_t ext_r_, int64_t row0_,
                            bool ifast_, const GradPrologue<T>& pro_)
      : src(p), si(si_), sr(sr_), ext_i(ext_i_), ext_r(ext_r_), row0(row0_), ifast(ifast_), pro(pro_) {}

  __device__ __forceinline__ void coords(int j, int& i, int& r) const {
    const int e = static_cast<int>(threadIdx.x) + j * THREADS;
    i = ifast ? e % ROWS : e / BK;
    r = ifast ? e / ROWS : e % BK;
  }

  __device__ __forceinline__ void issue(int kt) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int i, r;
      coords(j, i, r);
      const int64_t gi = row0 + i, gr = static_cast<int64_t>(kt) * BK + r;
      const bool ok = gi < ext_i && gr < ext_r;
      stage[j] = ok ? load_raw<T>(src + gi * si + gr * sr) : Raw(0);
      if (PROLOGUE && pro.active()) ystage[j] = ok ? load_raw<T>(pro.y + gi * pro.si + gr * pro.sr) : Raw(0);
    }
  }

  __device__ __forceinline__ void commit(float* tile) const {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int i, r;
      coords(j, i, r);
      float v = Num<T>::to_float(stage[j]);
      if (PROLOGUE && pro.active()) v = pro.apply(v, Num<T>::to_float(ystage[PROLOGUE ? j : 0]));
      tile[r * kLd + i] = v;
    }
  }
};

// Grid: x over row tiles (BM), y over column tiles (BN). Static shared memory (17 KB).
// Two blocks per SM cap registers at 128 per thread; the backward's prologue (y's values held next
// to the 8 x 8 accumulator) needs more, and at 128 ptxas spilled 36-68 B on sm_80
// (docs/gpu_resources.md), so prologue kernels ask for one block per SM instead.
template <typename T, class Cfg, bool PROLOGUE>
__global__ void __launch_bounds__(Cfg::THREADS, PROLOGUE ? 1 : 2) gemm_simt_kernel(GemmProblem<T> p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  using LoaderA = SimtTileLoader<T, BM, BK, Cfg::THREADS, PROLOGUE>;
  using LoaderB = SimtTileLoader<T, BN, BK, Cfg::THREADS, false>;
  __shared__ __align__(16) float sa[2][BK * LoaderA::kLd];
  __shared__ __align__(16) float sb[2][BK * LoaderB::kLd];

  const int tx = threadIdx.x % Cfg::THREADS_N, ty = threadIdx.x / Cfg::THREADS_N;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * BN;
  LoaderA la(p.a, p.a_si, p.a_sr, p.rows, p.depth, row0, p.a_ifast, p.pro);
  LoaderB lb(p.b, p.b_sj, p.b_sr, p.cols, p.depth, col0, p.b_ifast, GradPrologue<T>());

  float acc[Cfg::TM][Cfg::TN];
#pragma unroll
  for (int i = 0; i < Cfg::TM; ++i)
#pragma unroll
    for (int j = 0; j < Cfg::TN; ++j) acc[i][j] = 0.f;

  const int num_k = static_cast<int>(ceil_div(p.depth, BK));
  if (num_k > 0) {
    la.issue(0);
    lb.issue(0);
    la.commit(sa[0]);
    lb.commit(sb[0]);
  }
  __syncthreads();
  for (int kt = 0; kt < num_k; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < num_k;
    if (more) {  // in flight during the compute below
      la.issue(kt + 1);
      lb.issue(kt + 1);
    }
    const float* a = sa[cur];
    const float* b = sb[cur];
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float av[Cfg::TM], bv[Cfg::TN];
#pragma unroll
      for (int gm = 0; gm < Cfg::GM; ++gm) {
        const float4 v = *reinterpret_cast<const float4*>(a + k * LoaderA::kLd + gm * Cfg::STEP_M + ty * 4);
        av[gm * 4 + 0] = v.x, av[gm * 4 + 1] = v.y, av[gm * 4 + 2] = v.z, av[gm * 4 + 3] = v.w;
      }
#pragma unroll
      for (int gn = 0; gn < Cfg::GN; ++gn) {
        const float4 v = *reinterpret_cast<const float4*>(b + k * LoaderB::kLd + gn * Cfg::STEP_N + tx * 4);
        bv[gn * 4 + 0] = v.x, bv[gn * 4 + 1] = v.y, bv[gn * 4 + 2] = v.z, bv[gn * 4 + 3] = v.w;
      }
#pragma unroll
      for (int i = 0; i < Cfg::TM; ++i)
#pragma unroll
        for (int j = 0; j < Cfg::TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    // The stage written here (cur ^ 1) was last read in iteration kt - 1, which every
    // thread finished before the barrier that ended that iteration.
    if (more) {
      la.commit(sa[cur ^ 1]);
      lb.commit(sb[cur ^ 1]);
    }
    __syncthreads();
  }

  // Epilogue: row ty*4 + q of group gm, columns tx*4 .. +3 of group gn, stored 4-wide
  // where ldc allows.
  float bias[Cfg::GN][4];
#pragma unroll
  for (int gn = 0; gn < Cfg::GN; ++gn)
#pragma unroll
    for (int e = 0; e < 4; ++e) bias[gn][e] = p.epi.bias_at(col0 + gn * Cfg::STEP_N + tx * 4 + e, p.cols);
#pragma unroll
  for (int gm = 0; gm < Cfg::GM; ++gm)
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
      for (int gn = 0; gn < Cfg::GN; ++gn) {
        const float* row_acc = acc[gm * 4 + q] + gn * 4;
        const float v[4] = {row_acc[0], row_acc[1], row_acc[2], row_acc[3]};
        store_row_segment<T, 4>(p.c, p.ldc, row0 + gm * Cfg::STEP_M + ty * 4 + q, col0 + gn * Cfg::STEP_N + tx * 4,
                                p.rows, p.cols, v, bias[gn], p.epi, p.c_vec >= 4);
      }
}

}  // namespace cuda
}  // namespace fastgan

// Shared pieces of the block-sparse (BSR) CUDA kernels: the problem descriptions, the
// tensor-core tile loader and the "step" functors that say where each reduction step of a
// CTA reads its operand tiles. The kernels themselves are in bsr_tc.cuh (fp16 / bf16 on
// tensor cores) and bsr_simt.cuh (exact fp32, and the fp16 / bf16 fallback).
//
// Notation (W [N, K] in BSR, blocks bn x bk, fastgan_kernels/ops/bsr.py):
//   forward   y[m, n]   = act(sum_k x[m, k] W[n, k] + b[n])         "dense-output" GEMM over W's block rows
//   grad_x    gx[m, k]  = sum_n g[m, n] W[n, k]                      "dense-output" GEMM over W's block columns
//   grad_vals gv[b][n,k] = sum_m g[m, r*bn+n] x[m, c*bk+k]          SDDMM, one output tile per kept block b
// with g = grad_out * act'(y) formed by the loaders (common.cuh's GradPrologue).
//
// A dense-output CTA owns one "line" of a BSR structure (a block row of W for the forward,
// a block column, through W.T's index, for grad_x), one M tile and one output sub-tile of
// the line's d_out columns. Its reduction is the sequence of steps (kept block e of the
// line, sub-range `sub` of the block's d_in reduction columns): A is read at reduction
// columns idx[e] * d_in + sub * BK (masked at the matrix edge), B is the values block
// (always in bounds: the padding of a block is stored as zeros).
#pragma once

#include "common.cuh"
#include "gemm_tc.cuh"

namespace fastgan {
namespace cuda {

// The dense-output GEMM over one BSR structure (forward or grad_x).
template <typename T>
struct BsrDenseProblem {
  using Raw = typename Num<T>::Raw;
  const Raw* a = nullptr;  // A(i, r): x (forward) or grad_out (grad_x), a[i * a_si + r * a_sr]
  int64_t a_si = 0, a_sr = 0;
  int64_t rows = 0;   // M
  int64_t depth = 0;  // extent of A's reduction index: K (forward) or N (grad_x)
  GradPrologue<T> pro;  // grad_x only
  const Raw* values = nullptr;  // [nnz, bn, bk], contiguous
  int64_t v_si = 0, v_sr = 0;   // strides of B(j, r) inside a block: (bk, 1) forward, (1, bk) grad_x
  int64_t block_elems = 0;      // bn * bk
  int d_in = 0, d_out = 0;      // block extent along the reduction / output: (bk, bn) fwd, (bn, bk) grad_x
  int subs_log2 = 0;            // log2(d_in / BK): reduction steps per kept block
  const int* ptr = nullptr;     // [lines + 1]
  const int* idx = nullptr;     // block index along the reduction of each entry
  const int* perm = nullptr;    // entry -> kept block (W.T's t_block); nullptr: the entry itself
  Raw* c = nullptr;             // [rows, cols], leading dimension ldc
  int64_t ldc = 0, cols = 0;    // cols: N (forward) or K (grad_x)
  BiasActEpilogue<T> epi;
  int64_t tiles_m = 0;
  int out_subs = 1;             // output sub-tiles per line (d_out / tile width, at least 1)
  bool a_vec = false, a_ifast = false, b_ifast = false;
  int c_vec = 1;
};

// The SDDMM gv[b] = (g[:, rows of b])^T x[:, cols of b] over the kept blocks, in W.T's order.
template <typename T>
struct BsrSddmmProblem {
  using Raw = typename Num<T>::Raw;
  const Raw* g = nullptr;  // grad_out [M, N]; A(i = n, r = m) = g[m * g_sm + n * g_sn]
  int64_t g_sm = 0, g_sn = 0;
  GradPrologue<T> pro;     // indexed like A: (i = n, r = m)
  const Raw* x = nullptr;  // [M, K]; B(j = k, r = m) = x[m * x_sm + k * x_sk]
  int64_t x_sm = 0, x_sk = 0;
  int64_t m = 0, n = 0, k = 0;
  int bn = 0, bk = 0;
  int64_t nnz = 0;
  const int* col_idx = nullptr;    // [nnz]
  const int* t_col_idx = nullptr;  // [nnz]: block row of W.T's entry e
  const int* t_block = nullptr;    // [nnz]: kept block of W.T's entry e
  int n_subs = 1, k_subs = 1;      // output sub-tiles per block along n and k
  int64_t m_per_split = 0;         // rows of the batch per split (a multiple of 32)
  int splits = 1;
  Raw* gv = nullptr;               // [nnz, bn, bk] (splits == 1)
  float* partial = nullptr;        // [splits, nnz, bn, bk] fp32 (splits > 1)
  bool a_vec = false, b_vec = false, a_ifast = false, b_ifast = false;
};

// Where step s of a CTA reads: A at reduction offset a_r0, B from b_base at offset b_r0.
template <typename Raw>
struct StepSrc {
  int64_t a_r0;
  const Raw* b_base;
  int64_t b_r0;
};

// Steps of a dense-output CTA: (kept entry start + s / subs, reduction sub-range s % subs).
template <typename T, int BK>
struct DenseSteps {
  using Raw = typename Num<T>::Raw;
  const BsrDenseProblem<T>* p;
  int start;
  __device__ __forceinline__ StepSrc<Raw> operator()(int s) const {
    const int e = start + (s >> p->subs_log2);
    const int sub = s & ((1 << p->subs_log2) - 1);
    const int blk = p->perm != nullptr ? __ldg(p->perm + e) : e;
    const int64_t r_in_blk = static_cast<int64_t>(sub) * BK;
    return {static_cast<int64_t>(__ldg(p->idx + e)) * p->d_in + r_in_blk, p->values + blk * p->block_elems,
            r_in_blk};
  }
};

// Steps of an SDDMM CTA: BK-row slices of its batch range, the same for A and B.
template <typename Raw, int BK>
struct SddmmSteps {
  const Raw* x;
  int64_t m0;
  __device__ __forceinline__ StepSrc<Raw> operator()(int s) const {
    const int64_t r0 = m0 + static_cast<int64_t>(s) * BK;
    return {r0, x, r0};
  }
};

// The coordinates of an SDDMM CTA: its kept block, block row / column, sub-tiles and batch range.
struct SddmmJob {
  int blk, brow, bcol, ns, ks, split;
};
// The grid is at most INT32_MAX blocks (host.cuh's grid_size), so every factor of it fits in 32 bits:
// unsigned 32-bit division is a few inline instructions where int64 division is a subroutine call,
// and the call's ABI made ptxas spill registers live across the kernel (docs/gpu_resources.md).
struct GridIndex {
  unsigned id;
  __device__ __forceinline__ unsigned next(unsigned extent) {  // the index along a dim of `extent`
    const unsigned q = id / extent, r = id - q * extent;
    id = q;
    return r;
  }
};

template <typename T>
__device__ __forceinline__ SddmmJob sddmm_job(const BsrSddmmProblem<T>& p) {
  const unsigned per_split = static_cast<unsigned>(p.nnz) * p.n_subs * p.k_subs;
  GridIndex g{blockIdx.x};
  SddmmJob j;
  const unsigned in_split = g.next(per_split);
  j.split = static_cast<int>(g.id);
  g.id = in_split;
  j.ks = static_cast<int>(g.next(p.k_subs));
  j.ns = static_cast<int>(g.next(p.n_subs));
  const int e = static_cast<int>(g.id);  // W.T's order: neighbours share x's column block
  j.blk = __ldg(p.t_block + e);
  j.brow = __ldg(p.t_col_idx + e);
  j.bcol = __ldg(p.col_idx + j.blk);
  return j;
}

// ---------------------------------------------------------------------------------------
// Tensor-core tile loader: gemm_tc.cuh's TcTileLoader, generalised to
//   * tiles whose 16-byte chunks do not divide evenly among the threads (threads past the
//     last chunk idle), which small blocks (16 x 16) need;
//   * tiles placed by absolute reduction offsets (r0) instead of k-tile numbers, and a
//     source pointer that may change per step (the values block of the step).
// Chunks are the same: 8 elements along the contiguous index, cp.async (zero-filled past
// the edge) when 16-byte loads are legal and no prologue applies, else registers
// (predicated element loads), prologue, and a shared-memory store after the compute.
// ---------------------------------------------------------------------------------------
template <typename T, int ROWS, int BK, bool IMAJOR, int THREADS, bool PROLOGUE>
struct BsrTcLoader {
  using L = TileLayout<ROWS, BK, IMAJOR>;
  static constexpr int kPer = (L::kChunks + THREADS - 1) / THREADS;
  static constexpr bool kEven = L::kChunks % THREADS == 0;
  using Raw = unsigned short;

  const Raw* src;
  int64_t s_i, s_r;      // strides of the tile's row index i and reduction index r
  int64_t ext_i, ext_r;  // valid extents of i and r (in src's coordinates)
  int64_t i0;            // first row of the tile
  const Raw* ysrc;       // prologue: y, indexed (i, r) with its own strides
  int64_t ys_i, ys_r;
  GradPrologue<T> pro;
  bool vec, async;
  uint4 stage[kPer];
  uint4 ystage[PROLOGUE ? kPer : 1];

  __device__ BsrTcLoader(const Raw* p, int64_t si, int64_t sr, int64_t ei, int64_t er, int64_t i0_, bool vec_,
                         const GradPrologue<T>& pro_)
      : src(p), s_i(si), s_r(sr), ext_i(ei), ext_r(er), i0(i0_), ysrc(pro_.y), ys_i(pro_.si), ys_r(pro_.sr),
        pro(pro_), vec(vec_), async(vec_ && !(PROLOGUE && pro_.active())) {}

  // Chunk j of this thread: (line, first in-line element); false past the tile's last chunk.
  __device__ __forceinline__ bool chunk(int j, int& line, int& c0) const {
    const int q = static_cast<int>(threadIdx.x) + j * THREADS;
    line = q / L::kChunksPerLine;
    c0 = (q % L::kChunksPerLine) * 8;
    return kEven || q < L::kChunks;
  }

  __device__ __forceinline__ void issue(Raw* tile, int64_t r0) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int line, c0;
      if (!chunk(j, line, c0)) continue;
      const int64_t gi = i0 + (IMAJOR ? c0 : line), gr = r0 + (IMAJOR ? line : c0);
      const bool line_ok = IMAJOR ? gr < ext_r : gi < ext_i;
      const int64_t left = IMAJOR ? ext_i - gi : ext_r - gr;
      const int nvalid = line_ok ? (left >= 8 ? 8 : (left > 0 ? static_cast<int>(left) : 0)) : 0;
      const int64_t off = gi * s_i + gr * s_r;  // dereferenced only where nvalid > 0
      const int64_t s_c = IMAJOR ? s_i : s_r;
      if (async) {
        cp_async_16(tile + line * L::kLd + c0, nvalid > 0 ? src + off : src, nvalid * 2);
      } else {
        stage[j] = load_chunk(src, off, s_c, nvalid, vec);
        if (PROLOGUE && pro.active())
          ystage[PROLOGUE ? j : 0] = load_chunk(ysrc, gi * ys_i + gr * ys_r, IMAJOR ? ys_i : ys_r, nvalid, vec);
      }
    }
  }

  __device__ __forceinline__ void commit(Raw* tile) {
    if (async) return;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int line, c0;
      if (!chunk(j, line, c0)) continue;
      uint4 v = stage[j];
      if (PROLOGUE && pro.active()) v = prologue_chunk<T>(v, ystage[PROLOGUE ? j : 0], pro);
      *reinterpret_cast<uint4*>(tile + line * L::kLd + c0) = v;
    }
  }
};

// Tile shape of the block-sparse tensor-core kernels, with the members tc_warp_tile reads.
// Warps form a WARPS_M x WARPS_N grid of WM x WN warp tiles (multiples of 16 x 16); small
// warp tiles keep 4 warps in small CTAs, so each thread stages few chunks (registers).
template <int BM_, int BN_, int BK_, int STAGES_, int WM_, int WN_>
struct BsrTcCfg {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, STAGES = STAGES_;
  static constexpr int WM = WM_, WN = WN_;
  static constexpr int WARPS_M = BM / WM, WARPS_N = BN / WN;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr int MIN_BLOCKS = 65536 / (THREADS * 128);  // per SM: caps registers at 128 / thread
  static_assert(WM % 16 == 0 && WN % 16 == 0 && BK % 16 == 0, "tiles are made of 16 x 16 x 16 mma steps");
  static_assert(BM % WM == 0 && BN % WN == 0, "warp tiles must cover the block tile");
};
// Dense-output kernels: 64 x BN tiles; 4 warps (8 for BN = 128).
template <int BN, int BK>
using BsrDenseCfg = BsrTcCfg<64, BN, BK, BK == 16 ? 4 : 3, BN >= 32 ? 32 : 16, BN >= 64 ? 32 : 16>;
// SDDMM: BM x BN tiles (16..64) with 2 x 2 warps where the tile allows.
template <int BM, int BN>
using BsrSddmmCfg = BsrTcCfg<BM, BN, 32, 3, BM >= 32 ? BM / 2 : 16, BN >= 32 ? BN / 2 : 16>;

// Column sums over splits of the SDDMM's fp32 partial results, in a fixed order (deterministic).
template <typename T>
__global__ void bsr_sddmm_finish_kernel(const float* __restrict__ partial, int splits, int64_t total,
                                        typename Num<T>::Raw* __restrict__ out) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int k = 0; k < splits; ++k) s += partial[k * total + e];
    out[e] = Num<T>::from_float(s);
  }
}

}  // namespace cuda
}  // namespace fastgan

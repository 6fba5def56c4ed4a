// Block-sparse kernels on CUDA cores: the exact fp32 path (fmaf, no TF32) and the fp16 /
// bf16 fallback where the tensor-core kernels cannot run (pre-sm_80 GPUs or builds).
// Operand tiles go through gemm_simt.cuh's SimtTileLoader (any strides, predicated,
// prologue applied on the way in) into fp32 [BK = 8][rows + 4] shared tiles, two stages:
// the loads of step s + 1 are in flight while step s is computed. Each thread owns a 4 x 4
// micro-tile (rows ty*4.., columns tx*4..).
//
//   bsr_dense_simt_kernel  64 x BN output tile of one line (forward or grad_x, see
//                          bsr_common.cuh); BN in {16, 32, 64, 128} (fp32: min(d_out, 128);
//                          fallback: 32, masked to the line when d_out = 16); 4 * BN threads.
//   bsr_sddmm_simt_kernel  BMT x BNT tile of one kept block's gradient over a batch range;
//                          (BMT, BNT) = (min(bn, 64), min(bk, 64)) for fp32, (32, 32) masked
//                          to the block for the fallback; BMT * BNT / 16 threads.
// Reduction steps are 8 columns wide, which divides every block size (>= 16).
#pragma once

#include "bsr_common.cuh"
#include "gemm_simt.cuh"

namespace fastgan {
namespace cuda {

// acc[i][j] += sum_k a[k][ty*4 + i] * b[k][tx*4 + j] over one 8-deep stage.
template <int LDA, int LDB>
__device__ __forceinline__ void simt_micro_tile(const float* a, const float* b, int ty, int tx, float (&acc)[4][4]) {
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float4 av = *reinterpret_cast<const float4*>(a + k * LDA + ty * 4);
    const float4 bv = *reinterpret_cast<const float4*>(b + k * LDB + tx * 4);
    const float ar[4] = {av.x, av.y, av.z, av.w}, br[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
  }
}

// Two-stage reduction over `nsteps` steps; steps(s) gives the reduction offsets (multiples of 8).
template <class LA, class LB, class Steps>
__device__ __forceinline__ void simt_reduce(LA& la, LB& lb, float (*sa)[8 * LA::kLd], float (*sb)[8 * LB::kLd],
                                            const Steps& steps, int nsteps, int ty, int tx, float (&acc)[4][4]) {
  auto issue = [&](int s) {
    const auto src = steps(s);
    la.issue(static_cast<int>(src.a_r0 >> 3));
    lb.src = src.b_base;
    lb.issue(static_cast<int>(src.b_r0 >> 3));
  };
  if (nsteps > 0) {
    issue(0);
    la.commit(sa[0]);
    lb.commit(sb[0]);
  }
  __syncthreads();
  for (int s = 0; s < nsteps; ++s) {
    const int cur = s & 1;
    const bool more = s + 1 < nsteps;
    if (more) issue(s + 1);  // in flight during the compute below
    simt_micro_tile<LA::kLd, LB::kLd>(sa[cur], sb[cur], ty, tx, acc);
    // Stage cur ^ 1 was last read in step s - 1, which every thread finished before the
    // barrier that ended it.
    if (more) {
      la.commit(sa[cur ^ 1]);
      lb.commit(sb[cur ^ 1]);
    }
    __syncthreads();
  }
}

template <typename T, int BN, bool GRADX>
__global__ void __launch_bounds__(4 * BN) bsr_dense_simt_kernel(BsrDenseProblem<T> p) {
  constexpr int BM = 64, BK = 8, THREADS_N = BN / 4, THREADS = 16 * THREADS_N;
  using LoaderA = SimtTileLoader<T, BM, BK, THREADS, GRADX>;
  using LoaderB = SimtTileLoader<T, BN, BK, THREADS, false>;
  __shared__ __align__(16) float sa[2][BK * LoaderA::kLd];
  __shared__ __align__(16) float sb[2][BK * LoaderB::kLd];

  GridIndex bid{blockIdx.x};  // 32-bit: no int64 division call (bsr_common.cuh)
  const int64_t m_tile = bid.next(static_cast<unsigned>(p.tiles_m));
  const int out_sub = static_cast<int>(bid.next(p.out_subs));
  const int line = static_cast<int>(bid.id);
  const int64_t row0 = m_tile * BM;
  const int o0 = out_sub * BN;
  const int64_t col0 = static_cast<int64_t>(line) * p.d_out + o0;
  const int64_t col_end = min(p.cols, static_cast<int64_t>(line) * p.d_out + p.d_out);
  const int start = __ldg(p.ptr + line), end = __ldg(p.ptr + line + 1);
  const int nsteps = (end - start) << p.subs_log2;
  const int tx = threadIdx.x % THREADS_N, ty = threadIdx.x / THREADS_N;

  LoaderA la(p.a, p.a_si, p.a_sr, p.rows, p.depth, row0, p.a_ifast, p.pro);
  // Rows j >= d_out of B (a tile wider than the block) load as zeros and are never stored.
  LoaderB lb(p.values, p.v_si, p.v_sr, p.d_out, p.d_in, o0, p.b_ifast, GradPrologue<T>());
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  const DenseSteps<T, BK> steps{&p, start};
  simt_reduce(la, lb, sa, sb, steps, nsteps, ty, tx, acc);

  float bias[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) bias[e] = p.epi.bias_at(col0 + tx * 4 + e, col_end);
#pragma unroll
  for (int q = 0; q < 4; ++q)
    store_row_segment<T, 4>(p.c, p.ldc, row0 + ty * 4 + q, col0 + tx * 4, p.rows, col_end, acc[q], bias, p.epi,
                            p.c_vec >= 4);
}

// At least one block per SM, i.e. no register cap below 255: with the bare thread bound ptxas's own
// occupancy target held the 32 x 32 tile (64 threads) to 72 registers and spilled 20 B in the main
// loop on sm_80; free, every tile this kernel is instantiated with needs 85-154 registers, no spill
// (docs/gpu_resources.md). The small tiles (16-64 threads) are register-bound either way.
template <typename T, int BMT, int BNT>
__global__ void __launch_bounds__(BMT* BNT / 16, 1) bsr_sddmm_simt_kernel(BsrSddmmProblem<T> p) {
  constexpr int BK = 8, THREADS_N = BNT / 4, THREADS = BMT * BNT / 16;
  using Raw = typename Num<T>::Raw;
  using LoaderA = SimtTileLoader<T, BMT, BK, THREADS, true>;
  using LoaderB = SimtTileLoader<T, BNT, BK, THREADS, false>;
  __shared__ __align__(16) float sa[2][BK * LoaderA::kLd];
  __shared__ __align__(16) float sb[2][BK * LoaderB::kLd];

  const SddmmJob job = sddmm_job(p);
  const int64_t m0 = static_cast<int64_t>(job.split) * p.m_per_split;
  const int64_t m1 = min(p.m, m0 + p.m_per_split);
  const int nsteps = m1 > m0 ? static_cast<int>(ceil_div(m1 - m0, BK)) : 0;
  const int n_in0 = job.ns * BMT, k_in0 = job.ks * BNT;
  const int tx = threadIdx.x % THREADS_N, ty = threadIdx.x / THREADS_N;

  LoaderA la(p.g, p.g_sn, p.g_sm, p.n, p.m, static_cast<int64_t>(job.brow) * p.bn + n_in0, p.a_ifast, p.pro);
  LoaderB lb(p.x, p.x_sk, p.x_sm, p.k, p.m, static_cast<int64_t>(job.bcol) * p.bk + k_in0, p.b_ifast,
             GradPrologue<T>());
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

  const SddmmSteps<Raw, BK> steps{p.x, m0};
  simt_reduce(la, lb, sa, sb, steps, nsteps, ty, tx, acc);

  // Only the block's own [bn, bk] entries (a fallback tile may be larger than the block).
  const int64_t blk_off = static_cast<int64_t>(job.blk) * p.bn * p.bk;
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const int r = n_in0 + ty * 4 + q;
    if (r >= p.bn) continue;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int c = k_in0 + tx * 4 + e;
      if (c >= p.bk) continue;
      const int64_t off = blk_off + static_cast<int64_t>(r) * p.bk + c;
      if (p.partial != nullptr)
        p.partial[static_cast<int64_t>(job.split) * p.nnz * p.bn * p.bk + off] = acc[q][e];
      else
        p.gv[off] = Num<T>::from_float(acc[q][e]);
    }
  }
}

}  // namespace cuda
}  // namespace fastgan

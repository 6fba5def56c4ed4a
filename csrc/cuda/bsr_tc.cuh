// Block-sparse kernels on tensor cores (fp16 / bf16, sm_80+): mma.sync m16n8k16 with fp32
// accumulators, ldmatrix fragments and a cp.async multi-stage pipeline, all from
// gemm_tc.cuh (tc_warp_tile, TileLayout, the PTX wrappers); bsr_common.cuh supplies the
// loader and the step functors that walk the BSR structure.
//
//   bsr_dense_tc_kernel  forward (GRADX = false): C = x · W^T over W's block rows,
//                        B(j = n, r = k) = values[blk][n][k]   R-major tile (ldmatrix)
//                        grad_x (GRADX = true): C = g · W over W's block columns,
//                        B(j = k, r = n) = values[blk][n][k]   I-major tile (ldmatrix.trans)
//                        A is R-major (contiguous along the reduction; other strides use
//                        element loads). Tile 64 x BN x BK, BN = min(d_out, 128),
//                        BK = min(d_in, 32); fused bias + activation epilogue.
//   bsr_sddmm_tc_kernel  grad_values: C[n, k] = sum_m g[m, n] x[m, k] for one kept block,
//                        both operands I-major (contiguous along n resp. k). Tile
//                        min(bn, 64) x min(bk, 64) x 32, the batch range of one split.
//
// Pipeline (identical to gemm_tc_kernel's, with a step functor in place of k-tile numbers):
// STAGES - 1 steps in flight; per step: wait for step s, barrier, issue step s + STAGES - 1
// into the stage step s - 1 used, compute step s, store register-path loads of the issued
// step. A CTA with no steps (an empty block row) goes straight to the epilogue.
#pragma once

#include "bsr_common.cuh"

namespace fastgan {
namespace cuda {

// One stage-pipelined reduction; A_IMAJOR / B_IMAJOR select the shared-memory layouts.
template <typename T, class Cfg, bool A_IMAJOR, bool B_IMAJOR, class LA, class LB, class Steps>
__device__ __forceinline__ void bsr_tc_reduce(LA& la, LB& lb, unsigned short* sa, unsigned short* sb,
                                              const Steps& steps, int nsteps, int wm0, int wn0,
                                              float (&acc)[Cfg::MT][Cfg::NT][4]) {
  using TA = TileLayout<Cfg::BM, Cfg::BK, A_IMAJOR>;
  using TB = TileLayout<Cfg::BN, Cfg::BK, B_IMAJOR>;
  auto issue = [&](int s, int stage) {
    const auto src = steps(s);
    la.issue(sa + stage * TA::kElems, src.a_r0);
    lb.src = src.b_base;
    lb.issue(sb + stage * TB::kElems, src.b_r0);
  };
#pragma unroll
  for (int s = 0; s < Cfg::STAGES - 1; ++s) {
    if (s < nsteps) {
      issue(s, s);
      la.commit(sa + s * TA::kElems);
      lb.commit(sb + s * TB::kElems);
    }
    cp_async_commit();
  }
  for (int s = 0; s < nsteps; ++s) {
    // Groups committed: STAGES - 1 + s; at most STAGES - 2 pending means step s has landed.
    // The barrier also ends every warp's compute of step s - 1, whose stage is refilled.
    cp_async_wait<Cfg::STAGES - 2>();
    __syncthreads();
    const int next = s + Cfg::STAGES - 1;
    const int ns = next % Cfg::STAGES, cs = s % Cfg::STAGES;
    if (next < nsteps) issue(next, ns);
    cp_async_commit();
    tc_warp_tile<T, Cfg, A_IMAJOR, B_IMAJOR>(sa + cs * TA::kElems, sb + cs * TB::kElems, wm0, wn0, acc);
    if (next < nsteps) {
      la.commit(sa + ns * TA::kElems);
      lb.commit(sb + ns * TB::kElems);
    }
  }
  cp_async_wait<0>();
}

template <class Cfg, bool A_IMAJOR, bool B_IMAJOR>
constexpr int bsr_tc_smem_bytes() {
  return Cfg::STAGES *
         (TileLayout<Cfg::BM, Cfg::BK, A_IMAJOR>::kElems + TileLayout<Cfg::BN, Cfg::BK, B_IMAJOR>::kElems) * 2;
}

// Grid: x = (line * out_subs + out_sub) * tiles_m + m_tile (a line's CTAs are neighbours
// and share its values blocks in L2). Dynamic shared memory: bsr_tc_smem_bytes<Cfg, false, GRADX>().
template <typename T, class Cfg, bool GRADX>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) bsr_dense_tc_kernel(BsrDenseProblem<T> p) {
#ifdef FASTGAN_TC_ARCH
  using Raw = unsigned short;
  using TA = TileLayout<Cfg::BM, Cfg::BK, false>;
  extern __shared__ __align__(16) unsigned char bsr_tc_smem[];
  FASTGAN_DYNAMIC_SMEM((bsr_tc_smem_bytes<Cfg, false, GRADX>()));
  Raw* sa = reinterpret_cast<Raw*>(bsr_tc_smem);
  Raw* sb = sa + Cfg::STAGES * TA::kElems;

  GridIndex bid{blockIdx.x};  // 32-bit: no int64 division call (bsr_common.cuh)
  const int64_t m_tile = bid.next(static_cast<unsigned>(p.tiles_m));
  const int out_sub = static_cast<int>(bid.next(p.out_subs));
  const int line = static_cast<int>(bid.id);
  const int64_t row0 = m_tile * Cfg::BM;
  const int o0 = out_sub * Cfg::BN;                       // first output column inside the block
  const int64_t col0 = static_cast<int64_t>(line) * p.d_out + o0;
  const int64_t col_end = min(p.cols, static_cast<int64_t>(line) * p.d_out + p.d_out);
  const int start = __ldg(p.ptr + line), end = __ldg(p.ptr + line + 1);
  const int nsteps = (end - start) << p.subs_log2;

  const int warp = threadIdx.x >> 5;
  const int wm0 = (warp % Cfg::WARPS_M) * Cfg::WM, wn0 = (warp / Cfg::WARPS_M) * Cfg::WN;
  BsrTcLoader<T, Cfg::BM, Cfg::BK, false, Cfg::THREADS, GRADX> la(p.a, p.a_si, p.a_sr, p.rows, p.depth, row0,
                                                                  p.a_vec, p.pro);
  // B(j, r) inside one block: rows j < d_out, reduction r < d_in, always in bounds.
  BsrTcLoader<T, Cfg::BN, Cfg::BK, GRADX, Cfg::THREADS, false> lb(p.values, p.v_si, p.v_sr, p.d_out, p.d_in, o0,
                                                                  true, GradPrologue<T>());
  float acc[Cfg::MT][Cfg::NT][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

  const DenseSteps<T, Cfg::BK> steps{&p, start};
  bsr_tc_reduce<T, Cfg, false, GRADX>(la, lb, sa, sb, steps, nsteps, wm0, wn0, acc);

  // Epilogue straight from the accumulators (as gemm_tc_kernel): thread (g, t) owns columns
  // 2t, 2t+1 of rows g and g + 8 of each mma tile; columns stop at the line's last column.
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float bias[Cfg::NT][2];
#pragma unroll
  for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) bias[nt][e] = p.epi.bias_at(col0 + wn0 + nt * 8 + 2 * t + e, col_end);
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float v[2] = {acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]};
        store_row_segment<T, 2>(p.c, p.ldc, row0 + wm0 + mt * 16 + g + 8 * h, col0 + wn0 + nt * 8 + 2 * t, p.rows,
                                col_end, v, bias[nt], p.epi, p.c_vec >= 2);
      }
#else
  __trap();  // no mma.sync / cp.async on this arch: the host launches the SIMT kernel instead
#endif
}

// Grid: x = split * (nnz * n_subs * k_subs) + (e * n_subs + n_sub) * k_subs + k_sub, e in
// W.T's order. Dynamic shared memory: bsr_tc_smem_bytes<Cfg, true, true>().
template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) bsr_sddmm_tc_kernel(BsrSddmmProblem<T> p) {
#ifdef FASTGAN_TC_ARCH
  using Raw = unsigned short;
  using TA = TileLayout<Cfg::BM, Cfg::BK, true>;
  extern __shared__ __align__(16) unsigned char bsr_tc_smem[];
  FASTGAN_DYNAMIC_SMEM((bsr_tc_smem_bytes<Cfg, true, true>()));
  Raw* sa = reinterpret_cast<Raw*>(bsr_tc_smem);
  Raw* sb = sa + Cfg::STAGES * TA::kElems;

  const SddmmJob job = sddmm_job(p);
  const int64_t m0 = static_cast<int64_t>(job.split) * p.m_per_split;
  const int64_t m1 = min(p.m, m0 + p.m_per_split);
  const int nsteps = m1 > m0 ? static_cast<int>(ceil_div(m1 - m0, Cfg::BK)) : 0;
  const int n_in0 = job.ns * Cfg::BM, k_in0 = job.ks * Cfg::BN;  // tile origin inside the block

  const int warp = threadIdx.x >> 5;
  const int wm0 = (warp % Cfg::WARPS_M) * Cfg::WM, wn0 = (warp / Cfg::WARPS_M) * Cfg::WN;
  BsrTcLoader<T, Cfg::BM, Cfg::BK, true, Cfg::THREADS, true> la(
      p.g, p.g_sn, p.g_sm, p.n, p.m, static_cast<int64_t>(job.brow) * p.bn + n_in0, p.a_vec, p.pro);
  BsrTcLoader<T, Cfg::BN, Cfg::BK, true, Cfg::THREADS, false> lb(
      p.x, p.x_sk, p.x_sm, p.k, p.m, static_cast<int64_t>(job.bcol) * p.bk + k_in0, p.b_vec, GradPrologue<T>());
  float acc[Cfg::MT][Cfg::NT][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

  const SddmmSteps<Raw, Cfg::BK> steps{p.x, m0};
  bsr_tc_reduce<T, Cfg, true, true>(la, lb, sa, sb, steps, nsteps, wm0, wn0, acc);

  // The whole [bn, bk] block is written, padding included (masked loads made it zero).
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t blk_off = static_cast<int64_t>(job.blk) * p.bn * p.bk;
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = n_in0 + wm0 + mt * 16 + g + 8 * h, c = k_in0 + wn0 + nt * 8 + 2 * t;
        const int64_t off = blk_off + static_cast<int64_t>(r) * p.bk + c;
        if (p.partial != nullptr) {
          *reinterpret_cast<float2*>(p.partial + static_cast<int64_t>(job.split) * p.nnz * p.bn * p.bk + off) =
              make_float2(acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]);
        } else {
          const uint32_t lo = Num<T>::from_float(acc[mt][nt][2 * h]);
          const uint32_t hi = Num<T>::from_float(acc[mt][nt][2 * h + 1]);
          *reinterpret_cast<uint32_t*>(p.gv + off) = lo | (hi << 16);
        }
      }
#else
  __trap();
#endif
}

}  // namespace cuda
}  // namespace fastgan

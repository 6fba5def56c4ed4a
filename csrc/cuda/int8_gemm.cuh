// Int8 GEMM acc[m, n] = sum_k xq[m, k] * w[n, k] (int32, exact) with int8_common.cuh's
// epilogue. Two kernels:
//
// int8_gemm_tc_kernel (sm_80+): mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32.
//   Block tile BM x BN x 64 bytes of K, STAGES cp.async stages, warps in a WARPS_M x WARPS_N
//   grid, each owning (WM/16) x (WN/8) mma tiles of int32 accumulators.
//     I8Large: 128 x 128, 8 warps (2 x 4), warp tile 64 x 32, 3 stages (60 KB shared memory)
//     I8Small:  64 x  64, 4 warps (2 x 2), warp tile 32 x 32, 4 stages (40 KB)
//   Both operands are stored K-contiguous in shared memory, [rows][64 + 16] bytes: the 80-byte
//   pitch is 5 (odd) 16-byte units, so the 8 row addresses of an ldmatrix phase fall in 8
//   distinct bank groups. Fragments come from plain ldmatrix.x4 (.b16 view of the bytes):
//   lane l receives bytes 4(l%4) .. 4(l%4)+3 of row l/4 of each 8 x 16-byte matrix, which is
//   exactly the s8 fragment of PTX ISA 9.7.14.5.10 "Matrix Fragments for mma.m16n8k32"
//   (groupID g = lane/4, threadID_in_group t = lane%4):
//     A (16 x 32, row): a-reg0 = A[g][4t..4t+3]   a-reg1 = A[g+8][4t..]   a-reg2 = A[g][16+4t..]
//                       a-reg3 = A[g+8][16+4t..]  (element i of a register in byte i)
//     B (32 x 8, col):  b-reg0 = B[4t..4t+3][g]   b-reg1 = B[16+4t..16+4t+3][g]
//     C/D (16 x 8):     c0, c1 = C[g][2t, 2t+1]   c2, c3 = C[g+8][2t, 2t+1]
//   A lane addresses (matrix q = l/8): rows (l % 16), bytes 16 (l / 16) of the 16 x 32 slice
//   -> matrices (rows 0-7, k 0-15), (8-15, 0-15), (0-7, 16-31), (8-15, 16-31) = a-reg0..3.
//   B lane addresses: n rows 8 (q / 2) + (l % 8), bytes 16 (q % 2) -> (n 0-7, k 0-15),
//   (n 0-7, k 16-31), (n 8-15, k 0-15), (n 8-15, k 16-31) = b-reg0/1 of n-tiles nt, nt + 1.
//   B = w^T in "col" layout is w [N, K] row-major, so the weight needs no transposition.
//   Loads: 16-byte cp.async chunks zero-filled past K (src-size = valid bytes) when the
//   operand is K-contiguous with 16-byte aligned rows (the packed weight always is);
//   otherwise predicated byte loads through registers, stored after the compute.
//
// int8_gemm_simt_kernel (any arch): 64 x 64 tile, 256 threads with 4 x 4 accumulators,
//   32 bytes of K per stage stored as packed 4-byte words [8][64 + 4]; __dp4a on sm_61+,
//   a plain signed byte loop below.
#pragma once

#include "gemm_tc.cuh"
#include "int8_common.cuh"

namespace fastgan {
namespace cuda {

struct I8Problem {
  const int8_t* a = nullptr;  // xq [M, K]: a[m * a_sm + k * a_sk]
  int64_t a_sm = 0, a_sk = 0;
  const int8_t* b = nullptr;  // w [N, K]: b[n * b_sn + k * b_sk]
  int64_t b_sn = 0, b_sk = 0;
  int64_t m = 0, n = 0, k = 0;
  bool a_vec = false, b_vec = false;  // 16-byte cp.async chunks are legal (tensor-core kernel)
  bool a_word = false, b_word = false;  // 4-byte word loads are legal (SIMT kernel)
  I8Epilogue epi;
};

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct I8Tile {
  static constexpr int BM = BM_, BN = BN_, BK = 64, STAGES = STAGES_;
  static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // per SM: caps registers at 128 / thread
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MT = WM / 16, NT = WN / 8;
  static constexpr int LD = BK + 16;  // bytes per shared-memory row
  static constexpr int SMEM = STAGES * (BM + BN) * LD;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16 x 16");
  static_assert((LD / 16) % 2 == 1, "row pitch must be an odd number of 16-byte units");
};
using I8Large = I8Tile<128, 128, 2, 4, 3, 2>;
using I8Small = I8Tile<64, 64, 2, 2, 4, 4>;

// D += A · B for one m16n8k32 s8 tile (fragments as above).
__device__ __forceinline__ void mma_s8_16832(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef FASTGAN_TC_ARCH
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// ROWS x 64-byte tile of a K-contiguous-in-shared-memory operand; thread t moves chunks
// q = t + j*THREADS: row q / 4, bytes 16 (q % 4) .. +15.
template <int ROWS, int BK, int LD, int THREADS>
struct I8TileLoader {
  static constexpr int kCPL = BK / 16, kChunks = ROWS * kCPL, kPer = kChunks / THREADS;
  static_assert(kChunks % THREADS == 0, "chunks must divide evenly among threads");
  const int8_t* src;
  int64_t s_i, s_r, ext_i, ext_r, i0;
  bool vec;
  uint4 stage[kPer];

  __device__ __forceinline__ void issue(int8_t* tile, int64_t r0) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int q = static_cast<int>(threadIdx.x) + j * THREADS;
      const int line = q / kCPL, c0 = (q % kCPL) * 16;
      const int64_t gi = i0 + line, gr = r0 + c0;
      const int64_t left = ext_r - gr;
      const int nvalid = gi < ext_i ? (left >= 16 ? 16 : (left > 0 ? static_cast<int>(left) : 0)) : 0;
      const int64_t off = gi * s_i + gr * s_r;  // dereferenced only where nvalid > 0
      if (vec) {
        cp_async_16(tile + line * LD + c0, nvalid > 0 ? src + off : src, nvalid);
      } else {
        uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
        for (int e = 0; e < 16; ++e)
          if (e < nvalid)
            w[e >> 2] |= static_cast<uint32_t>(static_cast<uint8_t>(__ldg(src + off + e * s_r))) << (8 * (e & 3));
        stage[j] = make_uint4(w[0], w[1], w[2], w[3]);
      }
    }
  }
  __device__ __forceinline__ void commit(int8_t* tile) const {
    if (vec) return;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int q = static_cast<int>(threadIdx.x) + j * THREADS;
      *reinterpret_cast<uint4*>(tile + (q / kCPL) * LD + (q % kCPL) * 16) = stage[j];
    }
  }
};

template <class Cfg>
__device__ __forceinline__ void i8_warp_tile(const int8_t* sa, const int8_t* sb, int wm0, int wn0,
                                             int32_t (&acc)[Cfg::MT][Cfg::NT][4]) {
  const int lane = threadIdx.x & 31, q = lane >> 3, rr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < Cfg::BK; kk += 32) {
    uint32_t af[Cfg::MT][4];
    uint32_t bf[Cfg::NT][2];
#pragma unroll
    for (int mt = 0; mt < Cfg::MT; ++mt)
      ldmatrix_x4<false>(af[mt], sa + (wm0 + mt * 16 + (lane & 15)) * Cfg::LD + kk + 16 * (lane >> 4));
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; nt += 2) {
      uint32_t r[4];
      ldmatrix_x4<false>(r, sb + (wn0 + nt * 8 + 8 * (q >> 1) + rr) * Cfg::LD + kk + 16 * (q & 1));
      bf[nt][0] = r[0];
      bf[nt][1] = r[1];
      bf[nt + 1][0] = r[2];
      bf[nt + 1][1] = r[3];
    }
#pragma unroll
    for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < Cfg::NT; ++nt) mma_s8_16832(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
  }
}

// Grid: x over M tiles, y over N tiles. Dynamic shared memory: Cfg::SMEM.
template <class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS) int8_gemm_tc_kernel(I8Problem p) {
#ifdef FASTGAN_TC_ARCH
  extern __shared__ __align__(16) unsigned char i8_smem[];
  FASTGAN_DYNAMIC_SMEM(Cfg::SMEM);
  int8_t* sa = reinterpret_cast<int8_t*>(i8_smem);
  int8_t* sb = sa + Cfg::STAGES * Cfg::BM * Cfg::LD;
  constexpr int A_ST = Cfg::BM * Cfg::LD, B_ST = Cfg::BN * Cfg::LD;
  const int warp = threadIdx.x >> 5;
  const int wm0 = (warp % Cfg::WARPS_M) * Cfg::WM, wn0 = (warp / Cfg::WARPS_M) * Cfg::WN;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * Cfg::BM, col0 = static_cast<int64_t>(blockIdx.y) * Cfg::BN;
  I8TileLoader<Cfg::BM, Cfg::BK, Cfg::LD, Cfg::THREADS> la{p.a, p.a_sm, p.a_sk, p.m, p.k, row0, p.a_vec, {}};
  I8TileLoader<Cfg::BN, Cfg::BK, Cfg::LD, Cfg::THREADS> lb{p.b, p.b_sn, p.b_sk, p.n, p.k, col0, p.b_vec, {}};

  int32_t acc[Cfg::MT][Cfg::NT][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0;

  const int num_k = static_cast<int>(ceil_div(p.k, Cfg::BK));
#pragma unroll
  for (int s = 0; s < Cfg::STAGES - 1; ++s) {
    if (s < num_k) {
      la.issue(sa + s * A_ST, static_cast<int64_t>(s) * Cfg::BK);
      lb.issue(sb + s * B_ST, static_cast<int64_t>(s) * Cfg::BK);
      la.commit(sa + s * A_ST);
      lb.commit(sb + s * B_ST);
    }
    cp_async_commit();
  }
  for (int kt = 0; kt < num_k; ++kt) {
    // As gemm_tc_kernel: k-tile kt has landed once at most STAGES - 2 groups are pending; the
    // barrier also retires every warp's reads of the stage refilled below.
    cp_async_wait<Cfg::STAGES - 2>();
    __syncthreads();
    const int next = kt + Cfg::STAGES - 1;
    const int ns = next % Cfg::STAGES, cs = kt % Cfg::STAGES;
    if (next < num_k) {
      la.issue(sa + ns * A_ST, static_cast<int64_t>(next) * Cfg::BK);
      lb.issue(sb + ns * B_ST, static_cast<int64_t>(next) * Cfg::BK);
    }
    cp_async_commit();
    i8_warp_tile<Cfg>(sa + cs * A_ST, sb + cs * B_ST, wm0, wn0, acc);
    if (next < num_k) {
      la.commit(sa + ns * A_ST);
      lb.commit(sb + ns * B_ST);
    }
  }
  cp_async_wait<0>();

  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const float os = p.epi.kind == kOutI8 ? __ldg(p.epi.out_scale) : 1.f;
  float wsv[Cfg::NT][2], bv[Cfg::NT][2];
#pragma unroll
  for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) p.epi.col_params(col0 + wn0 + nt * 8 + 2 * t + e, wsv[nt][e], bv[nt][e]);
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = row0 + wm0 + mt * 16 + g + 8 * h;
      const float xsv = p.epi.row_scale(row);
#pragma unroll
      for (int nt = 0; nt < Cfg::NT; ++nt)
        p.epi.store2(row, col0 + wn0 + nt * 8 + 2 * t, acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1], xsv, wsv[nt],
                     bv[nt], os);
    }
#else
  __trap();  // no int8 mma.sync on this arch: the host launches the SIMT kernel instead
#endif
}

// --- CUDA-core fallback ---------------------------------------------------------------------------
constexpr int kI8SimtTile = 64, kI8SimtWords = 8, kI8SimtThreads = 256;

__device__ __forceinline__ int32_t dot4_s8(int32_t a, int32_t b, int32_t c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
  return __dp4a(a, b, c);
#else
#pragma unroll
  for (int i = 0; i < 4; ++i)
    c += static_cast<int32_t>(static_cast<int8_t>(a >> (8 * i))) * static_cast<int32_t>(static_cast<int8_t>(b >> (8 * i)));
  return c;
#endif
}

// Word (row i, bytes 4w .. 4w+3 of the k-tile) of an operand, zero past the edges.
__device__ __forceinline__ int32_t i8_load_word(const int8_t* src, int64_t si, int64_t sr, int64_t ext_i,
                                                int64_t ext_r, int64_t gi, int64_t gr, bool word_ok) {
  if (gi >= ext_i || gr >= ext_r) return 0;
  const int8_t* p = src + gi * si + gr * sr;
  if (word_ok && gr + 4 <= ext_r) return __ldg(reinterpret_cast<const int32_t*>(p));
  uint32_t w = 0;
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (gr + e < ext_r) w |= static_cast<uint32_t>(static_cast<uint8_t>(__ldg(p + e * sr))) << (8 * e);
  return static_cast<int32_t>(w);
}

// Grid: x over M tiles, y over N tiles of 64. Thread (ty, tx) owns rows ty*4.., columns tx*4...
__global__ void __launch_bounds__(kI8SimtThreads) int8_gemm_simt_kernel(I8Problem p) {
  constexpr int T = kI8SimtTile, W = kI8SimtWords, LDW = T + 4;
  __shared__ __align__(16) int32_t sa[2][W * LDW];
  __shared__ __align__(16) int32_t sb[2][W * LDW];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * T, col0 = static_cast<int64_t>(blockIdx.y) * T;
  int32_t ra[2], rb[2];
  auto load = [&](int kt) {  // word e = tid + j*256 of each tile: row e / 8, word e % 8
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int e = tid + j * kI8SimtThreads, i = e / W, w = e % W;
      const int64_t gr = static_cast<int64_t>(kt) * (4 * W) + 4 * w;
      ra[j] = i8_load_word(p.a, p.a_sm, p.a_sk, p.m, p.k, row0 + i, gr, p.a_word);
      rb[j] = i8_load_word(p.b, p.b_sn, p.b_sk, p.n, p.k, col0 + i, gr, p.b_word);
    }
  };
  auto store = [&](int st) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int e = tid + j * kI8SimtThreads, i = e / W, w = e % W;
      sa[st][w * LDW + i] = ra[j];
      sb[st][w * LDW + i] = rb[j];
    }
  };
  int32_t acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0;
  const int num_k = static_cast<int>(ceil_div(p.k, 4 * W));
  if (num_k > 0) {
    load(0);
    store(0);
  }
  __syncthreads();
  for (int kt = 0; kt < num_k; ++kt) {
    const int cur = kt & 1;
    const bool more = kt + 1 < num_k;
    if (more) load(kt + 1);
#pragma unroll
    for (int w = 0; w < W; ++w) {
      const int4 av = *reinterpret_cast<const int4*>(&sa[cur][w * LDW + ty * 4]);
      const int4 bv = *reinterpret_cast<const int4*>(&sb[cur][w * LDW + tx * 4]);
      const int32_t a4[4] = {av.x, av.y, av.z, av.w}, b4[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = dot4_s8(a4[i], b4[j], acc[i][j]);
    }
    if (more) store(cur ^ 1);  // stage cur ^ 1 was last read before the previous barrier
    __syncthreads();
  }
  const float os = p.epi.kind == kOutI8 ? __ldg(p.epi.out_scale) : 1.f;
  float wsv[2][2], bv[2][2];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int e = 0; e < 2; ++e) p.epi.col_params(col0 + tx * 4 + 2 * h + e, wsv[h][e], bv[h][e]);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t row = row0 + ty * 4 + i;
    const float xsv = p.epi.row_scale(row);
#pragma unroll
    for (int h = 0; h < 2; ++h)
      p.epi.store2(row, col0 + tx * 4 + 2 * h, acc[i][2 * h], acc[i][2 * h + 1], xsv, wsv[h], bv[h], os);
  }
}

}  // namespace cuda
}  // namespace fastgan

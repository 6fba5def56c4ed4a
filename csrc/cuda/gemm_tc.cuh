// Tensor-core GEMM for fp16 / bf16 (sm_80+): C = epi(A · Bᵀ) of common.cuh's GemmProblem.
//
// Block tile BM x BN x BK (BK = 32), STAGES shared-memory stages. Warps form a
// WARPS_M x WARPS_N grid; each owns a WM x WN warp tile = (WM/16) x (WN/8) tiles of
// mma.sync.m16n8k16 (fp32 accumulators in registers).
//   TcLarge: 128 x 128, 8 warps (2 x 4), warp tile 64 x 32, 64 accumulators / thread.
//   TcSmall:  64 x  64, 4 warps (2 x 2), warp tile 32 x 32 (more blocks for small problems).
//
// Shared memory: each operand tile is stored in the layout its global memory is
// contiguous in (TileLayout): R-major [rows][BK + 8] (contiguous along r, e.g. x and W in
// the forward) or I-major [BK][rows + 8] (contiguous along the row index, e.g. Wᵀ and
// grad_outᵀ in the backward). Fragments come from ldmatrix (R-major) or ldmatrix.trans
// (I-major), so no operand is ever transposed in memory.
//
// Pipeline (one __syncthreads per k-tile), for k-tile kt:
//   wait until tile kt has landed; sync; start loading tile kt + STAGES - 1 into the stage
//   that tile kt - 1 used; compute tile kt; (register path) store the loaded tile.
// Loads move 16-byte chunks of 8 elements. A chunk goes by cp.async (zero-filled past the
// matrix edge) when its layout allows 16-byte loads and no prologue applies; otherwise it
// is loaded into registers (16-byte or element-wise, predicated), transformed by the
// prologue (grad_out * act'(y)) and stored to shared memory after the compute of the
// current tile, which hides the load latency behind one tile of MMAs.
#pragma once

#include <type_traits>

#include "common.cuh"

namespace fastgan {
namespace cuda {

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_, int MIN_BLOCKS_>
struct TcTile {
  static constexpr int BM = BM_, BN = BN_, BK = 32, STAGES = STAGES_;
  static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // per SM: caps registers at 128 / thread
  static constexpr int WARPS_M = WARPS_M_, WARPS_N = WARPS_N_;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;  // warp tile
  static constexpr int MT = WM / 16, NT = WN / 8;              // m16 and n8 mma tiles per warp
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be a multiple of 16 x 16");
};
using TcLarge = TcTile<128, 128, 2, 4, 3, 2>;  // 60 KB shared memory per block
using TcSmall = TcTile<64, 64, 2, 2, 3, 4>;    // 30 KB

// One ROWS x BK operand tile in shared memory. "Lines" are the outer index; a line holds
// kLineLen contiguous elements plus an 8-element (16 B) pad. Line pitches are 80 B
// (R-major), 144 B or 272 B (I-major): an odd number of 16-byte units, so the 8 line
// addresses of one ldmatrix phase hit 8 distinct 16-byte bank groups (conflict-free).
template <int ROWS, int BK, bool IMAJOR>
struct TileLayout {
  static constexpr int kLineLen = IMAJOR ? ROWS : BK;
  static constexpr int kLines = IMAJOR ? BK : ROWS;
  static constexpr int kLd = kLineLen + 8;
  static constexpr int kElems = kLines * kLd;
  static constexpr int kChunksPerLine = kLineLen / 8;
  static constexpr int kChunks = kLines * kChunksPerLine;
  static_assert((kLd / 8) % 2 == 1, "line pitch must be an odd number of 16-byte units");
};

template <class Cfg, bool A_IMAJOR, bool B_IMAJOR>
constexpr int tc_smem_bytes() {
  return Cfg::STAGES * (TileLayout<Cfg::BM, Cfg::BK, A_IMAJOR>::kElems + TileLayout<Cfg::BN, Cfg::BK, B_IMAJOR>::kElems) *
         2;
}

// --------------------------------------------------------------------------------------
// PTX wrappers (sm_80+; empty elsewhere: the host never launches these kernels there)
// --------------------------------------------------------------------------------------
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define FASTGAN_TC_ARCH 1
#endif

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy global -> shared; bytes past `src_bytes` (0..16) are zero-filled.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
#ifdef FASTGAN_TC_ARCH
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(__cvta_generic_to_global(src)), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#ifdef FASTGAN_TC_ARCH
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#ifdef FASTGAN_TC_ARCH
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// ldmatrix.x4: lanes 8q .. 8q+7 give the 8 row addresses of 8x8 matrix q; register q of
// every lane receives matrix q. Without .trans lane l gets row l/4, columns 2(l%4), +1;
// with .trans it gets row 2(l%4), +1 at column l/4 (PTX ISA, "ldmatrix").
template <bool TRANS>
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
#ifdef FASTGAN_TC_ARCH
  if (TRANS)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
#endif
}

// D += A · B for one m16n8k16 tile, fp32 accumulate. Fragment layout (PTX ISA, "Matrix
// Fragments for mma.m16n8k16 with floating point type"), g = lane / 4, t = lane % 4:
//   A (16x16, row):  a0 = A[g][2t..2t+1]   a1 = A[g+8][2t..]   a2 = A[g][2t+8..]   a3 = A[g+8][2t+8..]
//   B (16x8, col):   b0 = B[2t..2t+1][g]   b1 = B[2t+8..2t+9][g]
//   C/D (16x8):      d0,d1 = C[g][2t..2t+1]   d2,d3 = C[g+8][2t..2t+1]
// (the lower-indexed element of a pair in the low 16 bits).
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef FASTGAN_TC_ARCH
  if (std::is_same<T, __half>::value)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// --------------------------------------------------------------------------------------
// Chunk loads through registers
// --------------------------------------------------------------------------------------
// 8 elements starting at p[off], `stride` apart, the first `nvalid` of them real (the
// rest 0). `vec`: stride == 1 and p + off is 16-byte aligned, so a full chunk is one load.
__device__ __forceinline__ uint4 load_chunk(const unsigned short* p, int64_t off, int64_t stride, int nvalid,
                                            bool vec) {
  if (vec && nvalid == 8) return __ldg(reinterpret_cast<const uint4*>(p + off));
  uint32_t w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
  for (int e = 0; e < 8; ++e)
    if (e < nvalid) w[e >> 1] |= static_cast<uint32_t>(__ldg(p + off + e * stride)) << (16 * (e & 1));
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// grad * act'(y) for the 8 elements of a chunk, rounded back to T.
template <typename T>
__device__ __forceinline__ uint4 prologue_chunk(uint4 g, uint4 y, const GradPrologue<T>& pro) {
  uint32_t gw[4] = {g.x, g.y, g.z, g.w};
  const uint32_t yw[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
  for (int w = 0; w < 4; ++w) {
    const float lo = pro.apply(Num<T>::to_float(gw[w] & 0xffffu), Num<T>::to_float(yw[w] & 0xffffu));
    const float hi = pro.apply(Num<T>::to_float(gw[w] >> 16), Num<T>::to_float(yw[w] >> 16));
    gw[w] = static_cast<uint32_t>(Num<T>::from_float(lo)) | (static_cast<uint32_t>(Num<T>::from_float(hi)) << 16);
  }
  return make_uint4(gw[0], gw[1], gw[2], gw[3]);
}

// Loads the ROWS x BK tiles of one operand (rows row0.., reduction index kt*BK..) into a
// shared-memory stage. Thread t moves chunks q = t + j*THREADS: line q / kChunksPerLine,
// elements 8 (q % kChunksPerLine) .. +7 of that line — consecutive threads take consecutive
// 16-byte pieces of a line, so global loads are coalesced along the contiguous dim.
template <typename T, int ROWS, int BK, bool IMAJOR, int THREADS, bool PROLOGUE>
struct TcTileLoader {
  using L = TileLayout<ROWS, BK, IMAJOR>;
  static constexpr int kPer = L::kChunks / THREADS;
  static_assert(L::kChunks % THREADS == 0, "chunks must divide evenly among threads");
  using Raw = unsigned short;

  const Raw* src;
  int64_t s_line, s_c;      // strides of the line index and of the in-line index
  int64_t ext_line, ext_c;  // matrix extents along them
  const Raw* ysrc;          // prologue: y, same indexing with its own strides
  int64_t ys_line, ys_c;
  GradPrologue<T> pro;
  int64_t row0;
  bool vec, async;
  uint4 stage[kPer];
  uint4 ystage[PROLOGUE ? kPer : 1];

  __device__ TcTileLoader(const Raw* p, int64_t si, int64_t sr, int64_t ext_i, int64_t ext_r, int64_t row0_,
                          bool vec_, const GradPrologue<T>& pro_)
      : src(p), s_line(IMAJOR ? sr : si), s_c(IMAJOR ? si : sr), ext_line(IMAJOR ? ext_r : ext_i),
        ext_c(IMAJOR ? ext_i : ext_r), ysrc(pro_.y), ys_line(IMAJOR ? pro_.sr : pro_.si),
        ys_c(IMAJOR ? pro_.si : pro_.sr), pro(pro_), row0(row0_), vec(vec_),
        async(vec_ && !(PROLOGUE && pro_.active())) {}

  // Global (line, in-line) coordinates of chunk j's first element in k-tile kt.
  __device__ __forceinline__ void chunk(int j, int kt, int& line, int& c0, int64_t& gl, int64_t& gc) const {
    const int q = static_cast<int>(threadIdx.x) + j * THREADS;
    line = q / L::kChunksPerLine;
    c0 = (q % L::kChunksPerLine) * 8;
    gl = (IMAJOR ? static_cast<int64_t>(kt) * BK : row0) + line;
    gc = (IMAJOR ? row0 : static_cast<int64_t>(kt) * BK) + c0;
  }

  __device__ __forceinline__ void issue(Raw* tile, int kt) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int line, c0;
      int64_t gl, gc;
      chunk(j, kt, line, c0, gl, gc);
      const int64_t left = ext_c - gc;
      const int nvalid = gl < ext_line ? (left >= 8 ? 8 : (left > 0 ? static_cast<int>(left) : 0)) : 0;
      const int64_t off = gl * s_line + gc * s_c;  // dereferenced only where nvalid > 0
      if (async) {
        cp_async_16(tile + line * L::kLd + c0, nvalid > 0 ? src + off : src, nvalid * 2);
      } else {
        stage[j] = load_chunk(src, off, s_c, nvalid, vec);
        if (PROLOGUE && pro.active()) ystage[j] = load_chunk(ysrc, gl * ys_line + gc * ys_c, ys_c, nvalid, vec);
      }
    }
  }

  __device__ __forceinline__ void commit(Raw* tile) {
    if (async) return;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      int line, c0;
      int64_t gl, gc;
      chunk(j, 0, line, c0, gl, gc);
      uint4 v = stage[j];
      if (PROLOGUE && pro.active()) v = prologue_chunk<T>(v, ystage[PROLOGUE ? j : 0], pro);
      *reinterpret_cast<uint4*>(tile + line * L::kLd + c0) = v;
    }
  }
};

// One BK-deep step of a warp's MT x NT mma tiles from a shared-memory stage.
// ldmatrix lane addressing (lane l, matrix q = l / 8, row-in-matrix rr = l % 8):
//   A R-major: row 16mt + (l % 16), k 8(l / 16)                  -> a0..a3 (plain)
//   A I-major: k 8(q / 2) + rr,     row 16mt + 8(q % 2)          -> a0..a3 (.trans)
//   B R-major: n 8nt + 8(q / 2) + rr, k 8(q % 2)                 -> b[nt], b[nt+1] (plain)
//   B I-major: k 8(q % 2) + rr,     n 8nt + 8(q / 2)             -> b[nt], b[nt+1] (.trans)
// Each matrix lands exactly in the fragment register of the mma layout above.
template <typename T, class Cfg, bool A_IMAJOR, bool B_IMAJOR>
__device__ __forceinline__ void tc_warp_tile(const unsigned short* sa, const unsigned short* sb, int wm0, int wn0,
                                             float (&acc)[Cfg::MT][Cfg::NT][4]) {
  using LA = TileLayout<Cfg::BM, Cfg::BK, A_IMAJOR>;
  using LB = TileLayout<Cfg::BN, Cfg::BK, B_IMAJOR>;
  const int lane = threadIdx.x & 31, q = lane >> 3, rr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < Cfg::BK; kk += 16) {
    uint32_t af[Cfg::MT][4];
    uint32_t bf[Cfg::NT][2];
#pragma unroll
    for (int mt = 0; mt < Cfg::MT; ++mt) {
      const int m = wm0 + mt * 16;
      const int off = A_IMAJOR ? (kk + 8 * (q >> 1) + rr) * LA::kLd + m + 8 * (q & 1)
                               : (m + (lane & 15)) * LA::kLd + kk + 8 * (lane >> 4);
      ldmatrix_x4<A_IMAJOR>(af[mt], sa + off);
    }
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; nt += 2) {
      const int n = wn0 + nt * 8;
      const int off = B_IMAJOR ? (kk + 8 * (q & 1) + rr) * LB::kLd + n + 8 * (q >> 1)
                               : (n + 8 * (q >> 1) + rr) * LB::kLd + kk + 8 * (q & 1);
      uint32_t r[4];
      ldmatrix_x4<B_IMAJOR>(r, sb + off);
      bf[nt][0] = r[0];
      bf[nt][1] = r[1];
      bf[nt + 1][0] = r[2];
      bf[nt + 1][1] = r[3];
    }
#pragma unroll
    for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
      for (int nt = 0; nt < Cfg::NT; ++nt) mma_16816<T>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
  }
}

// Grid: x over row tiles (BM), y over column tiles (BN). Dynamic shared memory:
// tc_smem_bytes<Cfg, A_IMAJOR, B_IMAJOR>().
// TcLarge's gradient kernels (PROLOGUE: y's tile in registers next to the 128 x 128 accumulator)
// spilled 4-8 B at the 128-register cap of 2 blocks per SM on sm_80 / sm_90; like the SIMT ones they
// ask for one block per SM (153-168 registers, docs/gpu_resources_history.md). TcSmall keeps its cap.
template <typename T, class Cfg, bool A_IMAJOR, bool B_IMAJOR, bool PROLOGUE>
__global__ void __launch_bounds__(Cfg::THREADS, PROLOGUE && Cfg::BM * Cfg::BN >= 128 * 128 ? 1 : Cfg::MIN_BLOCKS)
    gemm_tc_kernel(GemmProblem<T> p) {
#ifdef FASTGAN_TC_ARCH
  using LA = TileLayout<Cfg::BM, Cfg::BK, A_IMAJOR>;
  using LB = TileLayout<Cfg::BN, Cfg::BK, B_IMAJOR>;
  using Raw = unsigned short;
  extern __shared__ __align__(16) unsigned char tc_smem[];
  FASTGAN_DYNAMIC_SMEM((tc_smem_bytes<Cfg, A_IMAJOR, B_IMAJOR>()));
  Raw* sa = reinterpret_cast<Raw*>(tc_smem);
  Raw* sb = sa + Cfg::STAGES * LA::kElems;

  const int warp = threadIdx.x >> 5;
  const int wm0 = (warp % Cfg::WARPS_M) * Cfg::WM, wn0 = (warp / Cfg::WARPS_M) * Cfg::WN;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * Cfg::BM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * Cfg::BN;

  TcTileLoader<T, Cfg::BM, Cfg::BK, A_IMAJOR, Cfg::THREADS, PROLOGUE> la(p.a, p.a_si, p.a_sr, p.rows, p.depth, row0,
                                                                         p.a_vec, p.pro);
  TcTileLoader<T, Cfg::BN, Cfg::BK, B_IMAJOR, Cfg::THREADS, false> lb(p.b, p.b_sj, p.b_sr, p.cols, p.depth, col0,
                                                                      p.b_vec, GradPrologue<T>());

  float acc[Cfg::MT][Cfg::NT][4];
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[mt][nt][e] = 0.f;

  const int num_k = static_cast<int>(ceil_div(p.depth, Cfg::BK));
  // Pipeline fill: k-tiles 0 .. STAGES-2, one commit group each (possibly empty).
#pragma unroll
  for (int s = 0; s < Cfg::STAGES - 1; ++s) {
    if (s < num_k) {
      la.issue(sa + s * LA::kElems, s);
      lb.issue(sb + s * LB::kElems, s);
      la.commit(sa + s * LA::kElems);
      lb.commit(sb + s * LB::kElems);
    }
    cp_async_commit();
  }
  for (int kt = 0; kt < num_k; ++kt) {
    // Groups committed so far: STAGES-1+kt; allowing STAGES-2 pending means group kt
    // (k-tile kt) is complete. The barrier also ends every warp's compute of kt-1,
    // freeing its stage for k-tile kt + STAGES - 1.
    cp_async_wait<Cfg::STAGES - 2>();
    __syncthreads();
    const int next = kt + Cfg::STAGES - 1;
    const int ns = next % Cfg::STAGES, cs = kt % Cfg::STAGES;
    if (next < num_k) {
      la.issue(sa + ns * LA::kElems, next);
      lb.issue(sb + ns * LB::kElems, next);
    }
    cp_async_commit();
    tc_warp_tile<T, Cfg, A_IMAJOR, B_IMAJOR>(sa + cs * LA::kElems, sb + cs * LB::kElems, wm0, wn0, acc);
    if (next < num_k) {
      la.commit(sa + ns * LA::kElems);
      lb.commit(sb + ns * LB::kElems);
    }
  }
  cp_async_wait<0>();

  // Epilogue straight from the accumulators: thread (g, t) owns columns 2t, 2t+1 of rows g
  // and g+8 of every mma tile, stored as aligned pairs where ldc allows.
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float bias[Cfg::NT][2];
#pragma unroll
  for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) bias[nt][e] = p.epi.bias_at(col0 + wn0 + nt * 8 + 2 * t + e, p.cols);
#pragma unroll
  for (int mt = 0; mt < Cfg::MT; ++mt)
#pragma unroll
    for (int nt = 0; nt < Cfg::NT; ++nt)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const float v[2] = {acc[mt][nt][2 * h], acc[mt][nt][2 * h + 1]};
        store_row_segment<T, 2>(p.c, p.ldc, row0 + wm0 + mt * 16 + g + 8 * h, col0 + wn0 + nt * 8 + 2 * t, p.rows,
                                p.cols, v, bias[nt], p.epi, p.c_vec >= 2);
      }
#else
  __trap();  // built for an arch without mma.sync bf16/cp.async: the host uses the SIMT kernel
#endif
}

}  // namespace cuda
}  // namespace fastgan

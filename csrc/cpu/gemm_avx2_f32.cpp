// The AVX2 + FMA GEMM path (x86-64 without AVX-512: Haswell .. Alder Lake, Zen 1-3):
// 6 x 16 fp32 micro-tile, 12 ymm accumulators + 2 B vectors + 1 broadcast of the 16
// registers, two FMA ports x 4-5 cycles of latency covered. bf16 and fp16 operands are
// converted to fp32 while packed. Same blocked driver, same epilogue contract as the
// AVX-512 path; tails that AVX2 cannot mask for 16-bit data go through a small buffer.
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "activation.h"
#include "gemm/driver.h"
#include "gemm/io_avx2.h"
#include "gemm/pack_portable.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

using namespace ::fastgan::cpu::avx2;
using namespace avx2_io;
constexpr int kMR = 6, kNR = 16;

FASTGAN_AVX2_INLINE __m256 load8_pro(const char* p, DType dt, const Prologue& pro, const char* q, int n) {
  const __m256 v = load8(p, dt, n);
  if (pro.act == kIdentity) return v;
  return grad_from_output_ps(pro.act, v, load8(q, pro.y.dt, n), _mm256_set1_ps(pro.slope));
}

FASTGAN_AVX2_INLINE void transpose8x8(__m256 (&r)[8]) {  // r[i][j] -> r[j][i]
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20), r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20), r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20), r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20), r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// fp32 panel dst[k * P + l] (P = 6 or 16): k-contiguous sources are transposed 8 x 8,
// lane-contiguous ones copied, anything else goes scalar (pack_portable.h).
template <int P>
static FASTGAN_AVX2_TARGET void pack(const Operand& src, const Prologue& pro, int lanes, int64_t kc, float* dst) {
  const bool y = pro.act != kIdentity;
  const int64_t sz = dtype_size(src.dt), ysz = dtype_size(pro.y.dt);
  if ((src.ks == 1 || kc == 1) && (!y || pro.y.ks == 1 || kc == 1)) {
    for (int l0 = 0; l0 < P; l0 += 8) {
      const int width = P - l0 < 8 ? P - l0 : 8;  // lanes of this group stored per row
      const __m256i wmask = first_lanes(width);
      for (int64_t k0 = 0; k0 < kc; k0 += 8) {
        const int nk = static_cast<int>(kc - k0 < 8 ? kc - k0 : 8);
        __m256 r[8];
        for (int i = 0; i < 8; ++i) {
          const int64_t l = l0 + i;
          r[i] = l < lanes ? load8_pro(src.base + (l * src.ls + k0) * sz, src.dt, pro,
                                       y ? pro.y.base + (l * pro.y.ls + k0) * ysz : nullptr, nk)
                           : _mm256_setzero_ps();
        }
        transpose8x8(r);
        for (int j = 0; j < nk; ++j) _mm256_maskstore_ps(dst + (k0 + j) * P + l0, wmask, r[j]);
      }
    }
  } else if ((src.ls == 1 || lanes == 1) && (!y || pro.y.ls == 1 || lanes == 1)) {
    for (int64_t k = 0; k < kc; ++k) {
      for (int l0 = 0; l0 < P; l0 += 8) {
        const int width = P - l0 < 8 ? P - l0 : 8;
        const int n = lanes - l0 < 0 ? 0 : (lanes - l0 < width ? lanes - l0 : width);
        const __m256 v = n ? load8_pro(src.base + (l0 + k * src.ks) * sz, src.dt, pro,
                                       y ? pro.y.base + (l0 + k * pro.y.ks) * ysz : nullptr, n)
                           : _mm256_setzero_ps();
        _mm256_maskstore_ps(dst + k * P + l0, first_lanes(width), v);
      }
    }
  } else {
    pack_generic<PanelF32>(src, pro, P, lanes, kc, kc, dst);
  }
}

template <int ACT, int R, int V>
FASTGAN_AVX2_INLINE void finish(__m256 (&c)[R][V], const TileOut& o) {
  const __m256 slope = _mm256_set1_ps(o.slope);
  const int64_t esz = dtype_size(o.dtype);
#pragma GCC unroll 2
  for (int v = 0; v < V; ++v) {
    const int n = o.cols - 8 * v < 8 ? o.cols - 8 * v : 8;
    const __m256 b = o.bias ? _mm256_maskload_ps(o.bias + 8 * v, first_lanes(n)) : _mm256_setzero_ps();
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
      const __m256 z = act_ps<ACT>(_mm256_add_ps(c[r][v], b), slope);
      store8(static_cast<char*>(o.out) + (r * o.ldc + 8 * v) * esz, o.dtype, z, n);
    }
  }
}

template <int R, int V>
static FASTGAN_AVX2_TARGET void kernel_avx2(int64_t kc, const float* a, const float* b, const TileOut& o) {
  __m256 c[R][V];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v)
      c[r][v] = (o.first || r >= o.rows) ? _mm256_setzero_ps()
                                         : _mm256_maskload_ps(o.acc + r * o.ld_acc + 8 * v, first_lanes(o.cols - 8 * v));
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; ++k, a += kMR, b += kNR) {
    __m256 bv[V];
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) bv[v] = _mm256_load_ps(b + 8 * v);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) c[r][v] = _mm256_fmadd_ps(ar, bv[v], c[r][v]);
    }
  }
  if (!o.last) {  // (fully unrolled loops keep c[][] in registers)
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      if (r >= o.rows) break;
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v)
        _mm256_maskstore_ps(o.acc + r * o.ld_acc + 8 * v, first_lanes(o.cols - 8 * v), c[r][v]);
    }
    return;
  }
  cpu::avx2::dispatch_activation(o.act,
                                 [&](auto a) FASTGAN_AVX2_INLINE_LAMBDA { finish<decltype(a)::value, R, V>(c, o); });
}

struct Avx2F32Traits {
  using Elem = float;
  static constexpr int MR = kMR, NR = kNR, KU = 1, NU = 8;
  // 6 x 256 A panel (6 KiB) and 256 x 16 B panel (16 KiB) in a 32 KiB L1; A block
  // 144 x 256 (144 KiB) in L2, B block 256 x 2048 (2 MiB) in L3.
  static constexpr int64_t KC = 256, MC = 144, NC = 2048;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t, float* dst) {
    pack<MR>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t, int64_t n0, int cols, float* dst) {
    pack<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, dst);
  }
  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    using Fn = void (*)(int64_t, const float*, const float*, const TileOut&);
    static const Fn table[kMR][2] = {{&kernel_avx2<1, 1>, &kernel_avx2<1, 2>}, {&kernel_avx2<2, 1>, &kernel_avx2<2, 2>},
                                     {&kernel_avx2<3, 1>, &kernel_avx2<3, 2>}, {&kernel_avx2<4, 1>, &kernel_avx2<4, 2>},
                                     {&kernel_avx2<5, 1>, &kernel_avx2<5, 2>}, {&kernel_avx2<6, 1>, &kernel_avx2<6, 2>}};
    table[o.rows - 1][o.cols > 8](kc, a, b, o);
  }
  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  static void thread_begin() {}
  static void thread_end() {}
};

}  // namespace

void run_avx2_f32(const Problem& p) { drive<Avx2F32Traits>(p); }

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_avx2_f32(const Problem& p) { run_portable(p); }
}}}
#endif

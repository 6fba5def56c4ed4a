// AVX2 packer: fp32 panels dst[k * P + l] (P lanes per k step; the dense GEMM's 6-row A
// and 16-column B panels, the block-sparse path's 6-row and 16-column panels), from a
// strided operand of any dtype, with the optional prologue g * act'(y) applied on the way
// (pack_portable.h: Prologue). k-contiguous sources are transposed 8 x 8, lane-contiguous
// ones copied, anything else goes scalar (pack_generic). bf16 / fp16 become fp32 here.
#pragma once
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "epilogue_avx2.h"
#include "pack_portable.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace avx2 {

FASTGAN_AVX2_INLINE __m256 load8_pro(const char* p, DType dt, const Prologue& pro, const char* q, int n) {
  const __m256 v = load8(p, dt, n);
  if (pro.act == kIdentity) return v;
  return grad_from_output_ps(pro.act, v, load8(q, pro.y.dt, n), _mm256_set1_ps(pro.slope));
}

// In: r[i] = 8 consecutive k of lane i. Out: r[j] = lanes 0..7 of k j.
FASTGAN_AVX2_INLINE void transpose8x8(__m256 (&r)[8]) {
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

// The `width` lanes of one k row of a panel. vmaskmovps stores are slow on AMD cores (and
// not fast elsewhere), so rows are stored whole: a group narrower than 8 (the last one,
// P = 6) spills its extra lanes onto the start of the next k row, which that row's store
// (issued later) overwrites; only the panel's last row needs the mask.
FASTGAN_AVX2_INLINE void store_row(float* d, int width, bool last_row, __m256i wmask, __m256 v) {
  if (width == 8 || !last_row) _mm256_storeu_ps(d, v);
  else _mm256_maskstore_ps(d, wmask, v);
}

// One panel of `kc` k steps; lanes past `lanes` (up to P) are zero.
template <int P>
static FASTGAN_AVX2_TARGET void pack_f32(const Operand& src, const Prologue& pro, int lanes, int64_t kc, float* dst) {
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
        for (int j = 0; j < nk; ++j) store_row(dst + (k0 + j) * P + l0, width, k0 + j + 1 == kc, wmask, r[j]);
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
        store_row(dst + k * P + l0, width, k + 1 == kc, first_lanes(width), v);
      }
    }
  } else {
    pack_generic<PanelF32>(src, pro, P, lanes, kc, kc, dst);
  }
}

}  // namespace avx2
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#endif  // __x86_64__

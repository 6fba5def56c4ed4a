// int8 chain layers at small batch on CPUs with AVX2 but without AVX512-VNNI, where the int8
// kernels otherwise take their portable scalar path. Reads the same packed blob
// (int8/packed_weight.h: per 16-column panel, [Kp / 4][16][4] bytes) in place: each group of
// 4 k of 4 columns (16 bytes) is widened to int16 and multiplied by the row's 4 k with
// vpmaddwd (exact int16 x int16 -> int32 pair sums, no saturation, unlike vpmaddubsw), and the
// epilogue is the reference's, operation for operation ((acc * x_scale) * w_scale + bias, no FMA:
// this file's target has none), so the results equal the portable kernel's.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../activation.h"
#include "../gemm/gemm.h"
#include "../gemm/tile.h"
#include "../int8/int8.h"
#include "../int8/packed_weight.h"
#include "chain.h"

#if defined(__x86_64__)
#include <immintrin.h>

namespace fastgan {
namespace cpu {
namespace chain {
namespace {

#define FASTGAN_AVX2_I8 __attribute__((target("avx2"), optimize("fp-contract=off")))

// acc[r][n] (16 columns of one panel) for R rows of A (int8, kp bytes each, zero padded).
template <int R>
FASTGAN_AVX2_I8 void panel_dots(const int8_t* a, int64_t lda, const int8_t* panel, int64_t groups, int32_t (*acc)[16]) {
  __m256i c[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) c[r][j] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i ar[R];
    for (int r = 0; r < R; ++r) {
      int32_t four;
      std::memcpy(&four, a + r * lda + 4 * g, 4);
      ar[r] = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_set1_epi32(four)));  // [k0..k3] x 4
    }
    const int8_t* w = panel + g * 64;
    for (int j = 0; j < 4; ++j) {
      const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 16 * j)));
      for (int r = 0; r < R; ++r) c[r][j] = _mm256_add_epi32(c[r][j], _mm256_madd_epi16(ar[r], wv));
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) {
      alignas(32) int32_t pairs[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(pairs), c[r][j]);
      for (int i = 0; i < 4; ++i) acc[r][4 * j + i] = pairs[2 * i] + pairs[2 * i + 1];
    }
}

FASTGAN_AVX2_I8 void store(const Layer& L, const Out& out, int64_t m, int64_t n, int32_t acc, float xs) {
  float y = static_cast<float>(acc) * xs;
  y = y * L.w_scale[n];
  if (L.bias) y = y + L.bias[n];
  y = act_ref(L.act, y, L.slope);
  char* p = static_cast<char*>(out.data) + (m * out.ld + n) * store_size(out.kind);
  if (out.kind == Store::kI8) {
    float v = y / L.out_scale;
    v = v != v ? 0.f : std::nearbyint(std::min(std::max(v, -127.f), 127.f));
    *reinterpret_cast<int8_t*>(p) = static_cast<int8_t>(v);
  } else {
    gemm::store_scalar(p, out.kind == Store::kBF16 ? gemm::DType::kBF16 : gemm::DType::kF32, y);
  }
}

}  // namespace

bool small_batch_int8_applies(const Layer& L, const Act& in, int64_t rows) {
  return (L.format == Format::kInt8Dynamic || L.format == Format::kInt8Static) && rows <= kSmallBatchRows &&
         (in.kind != Store::kI8 || in.cs == 1);
}

int64_t small_batch_int8(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1) {
  int8::PackedHeader h;
  std::memcpy(&h, L.blob, sizeof(h));
  const int8::PackedView w = int8::packed_view(L.blob, h);
  // A as int8 rows of kp bytes, zero padded (the blob's padded k are zero too).
  int8_t* a = static_cast<int8_t*>(thread_buffer(kSlotSmallInt8, rows * h.kp));
  std::memset(a, 0, static_cast<size_t>(rows * h.kp));
  const float* xs;
  bool per_row;
  if (in.kind == Store::kI8) {
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(a + r * h.kp, static_cast<const int8_t*>(in.data) + r * in.rs, static_cast<size_t>(L.K));
    xs = &L.in_scale, per_row = false;
  } else {  // dynamic: per-token quantisation, exactly the int8 kernels' (quantize_rows_*)
    float* scales = static_cast<float*>(thread_buffer(kSlotScales, rows * int64_t{sizeof(float)}));
    int8_t* q = static_cast<int8_t*>(thread_buffer(kSlotQuant2, rows * L.K));
    int8::QuantArgs qa;
    qa.M = rows, qa.K = L.K, qa.x = in.data, qa.rs = in.rs, qa.cs = in.cs;
    qa.dt = in.kind == Store::kBF16 ? int8::InType::kBF16 : int8::InType::kF32;
    qa.q = q, qa.scale = scales;
    const int64_t bad = int8::quantizer()(qa, 0, rows);
    if (bad >= 0) return bad;
    for (int64_t r = 0; r < rows; ++r) std::memcpy(a + r * h.kp, q + r * L.K, static_cast<size_t>(L.K));
    xs = scales, per_row = true;
  }
  const int64_t groups = int8::ceil_div(L.K, 4);
  int32_t acc[2][16];
  for (int64_t p = n0 / int8::kPanel; p * int8::kPanel < n1; ++p) {
    const int8_t* panel = w.data + p * w.panel_bytes();
    const int64_t c0 = std::max(n0, p * int8::kPanel), c1 = std::min(n1, (p + 1) * int8::kPanel);
    for (int64_t r = 0; r < rows; r += 2) {
      const int R = rows - r >= 2 ? 2 : 1;
      if (R == 2) panel_dots<2>(a + r * h.kp, h.kp, panel, groups, acc);
      else panel_dots<1>(a + r * h.kp, h.kp, panel, groups, acc);
      for (int i = 0; i < R; ++i)
        for (int64_t n = c0; n < c1; ++n)
          store(L, out, r + i, n, acc[i][n - p * int8::kPanel], xs[per_row ? r + i : 0]);
    }
  }
  return -1;
}

}  // namespace chain
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: never applies
namespace fastgan { namespace cpu { namespace chain {
bool small_batch_int8_applies(const Layer&, const Act&, int64_t) { return false; }
int64_t small_batch_int8(const Layer&, const Act&, const Out&, int64_t, int64_t, int64_t) { return -1; }
}}}
#endif

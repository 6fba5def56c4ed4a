// The row loop shared by the vector quantisers (../int8_avx512.cpp, ../int8_quantize_avx2.cpp):
// strided rows gathered into fp32 first, the per-token scale (amax / 127, 1/127 for a zero row),
// the non-finite check on the bit max of |x|. The ISA-specific work is per row, through two
// out-of-line functions of the ISA's translation unit (a call per row, not per element).
#pragma once

#include <cstdint>

#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {

struct RowQuantizer {
  // max over k < K of |x[k]|'s bits, x a contiguous row of type dt (>= 0x7f800000: NaN / Inf)
  uint32_t (*amax_bits)(const void* row, InType dt, int64_t K);
  // q[k] = clamp(rint(x[k] / scale), -127, 127) for k < K (IEEE division, ties to even);
  // returns the max of |x|'s bits
  uint32_t (*quantize)(const void* row, InType dt, int64_t K, float scale, int8_t* q);
};

// quantize_rows_* (int8.h) on top of one ISA's row functions (defined in int8_portable.cpp).
int64_t quantize_rows_with(const QuantArgs& a, int64_t m0, int64_t m1, const RowQuantizer& rq);

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

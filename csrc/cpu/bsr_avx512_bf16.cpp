// The AVX512-BF16 block-sparse path (bf16 operands only): bf16 k-pair panels and the GEMM
// core's vdpbf16ps k loop, fp32 accumulation (bsr/driver.h). With the prologue
// (backward) g = grad_out * act'(y) is formed in fp32 and rounded to bf16 once, as in the
// dense bf16 path.
#include "bsr/problem.h"

#if defined(__x86_64__)
#include "bsr/driver.h"
#include "bsr/tile_avx512.h"
#include "gemm/pack_avx512.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

struct Bf16Traits : avx512::TileShape {
  using Elem = uint16_t;
  static constexpr int KU = 2;  // k-pairs: every k extent is padded to even (blocks are >= 16)
  template <int P>
  static void pack(const Operand& src, const Prologue& pro, int lanes, int64_t kc, int64_t kcp, uint16_t* dst) {
    gemm::avx512::pack_pairs<P>(src, pro, lanes, kc, kcp, dst);
  }
  static avx512::SegTile tile(int rows, int cols, int bs) { return avx512::seg_tile_bf16_for(rows, cols, bs); }
  static bool b_in_place(const Structure&) { return false; }  // pairs interleave two rows of a block
};

}  // namespace

void forward_avx512_bf16(const Forward& p) { run_forward<Bf16Traits>(p); }
void backward_avx512_bf16(const Backward& p) { run_backward<Bf16Traits>(p); }

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace bsr {
void forward_avx512_bf16(const Forward& p) { forward_portable(p); }
void backward_avx512_bf16(const Backward& p) { backward_portable(p); }
}}}
#endif

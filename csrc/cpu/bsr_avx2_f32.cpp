// The AVX2 + FMA block-sparse path (x86-64 without AVX-512, every dtype): the shared
// block-sparse driver (bsr/driver.h) over 6-row A panels and 16-column B panels, packed
// by the AVX2 packer (gemm/pack_avx2.h; bf16 and fp16 converted to fp32 there), and the
// 6 x 16 ymm micro-tile (bsr/tile_avx2.h) with the AVX2 fused epilogue.
#include "bsr/problem.h"

#if defined(__x86_64__)
#include <cstring>

#include "bsr/driver.h"
#include "bsr/tile_avx2.h"
#include "gemm/pack_avx2.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

struct Avx2F32Traits : avx2::TileShape {
  using Elem = float;
  static constexpr int KU = 1;
  template <int P>
  static void pack(const Operand& src, const Prologue& pro, int lanes, int64_t kc, int64_t kcp, float* dst) {
    gemm::avx2::pack_f32<P>(src, pro, lanes, kc, dst);
    if (kcp > kc) std::memset(dst + kc * P, 0, sizeof(float) * (kcp - kc) * P);
  }
  static avx2::SegTile tile(int rows, int cols, int) { return avx2::seg_tile_f32_for(rows, cols); }
  // fp32 values are already B panels of grad_x ([bn][bk]: k = n, columns = the block's
  // k); the AVX2 tile reads them unaligned at stride bk, so any fp32 values qualify.
  static bool b_in_place(const Structure& w) { return w.vdtype == DType::kF32; }
};

}  // namespace

void forward_avx2_f32(const Forward& p) { run_forward<Avx2F32Traits>(p); }
void backward_avx2_f32(const Backward& p) { run_backward<Avx2F32Traits>(p); }

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace bsr {
void forward_avx2_f32(const Forward& p) { forward_portable(p); }
void backward_avx2_f32(const Backward& p) { backward_portable(p); }
}}}
#endif

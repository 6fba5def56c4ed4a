// The AVX-512 fp32 block-sparse path: the GEMM core's 8-row fp32 panels and FMA k loop
// (gemm/pack_avx512.h, gemm/microkernel_avx512.h) driven over the kept blocks
// (bsr/driver.h). fp16 and bf16 operands are converted to fp32 while packed (the
// path for fp16 everywhere, and for bf16 where vdpbf16ps is absent or slow).
#include "bsr/problem.h"

#if defined(__x86_64__)
#include <cstring>

#include "bsr/driver.h"
#include "bsr/tile_avx512.h"
#include "gemm/pack_avx512.h"

namespace fastgan {
namespace cpu {
namespace bsr {
namespace {

struct F32Traits : avx512::TileShape {
  using Elem = float;
  static constexpr int KU = 1;
  template <int P>
  static void pack(const Operand& src, const Prologue& pro, int lanes, int64_t kc, int64_t kcp, float* dst) {
    gemm::avx512::pack_f32<P>(src, pro, lanes, kc, dst);
    if (kcp > kc) std::memset(dst + kc * P, 0, sizeof(float) * (kcp - kc) * P);
  }
  static avx512::SegTile tile(int rows, int cols, int bs) { return avx512::seg_tile_f32_for(rows, cols, bs); }
  // fp32 values are already B panels of grad_x ([bn][bk]: k = n, columns = the block's k)
  // when aligned for the kernel's aligned loads and bk is a row stride the tiles are
  // instantiated for (BS <= 64, tile_avx512.h).
  static bool b_in_place(const Structure& w) {
    return w.vdtype == DType::kF32 && w.bk <= 64 && (reinterpret_cast<uintptr_t>(w.values) & 63) == 0;
  }
};

}  // namespace

void forward_avx512_f32(const Forward& p) { run_forward<F32Traits>(p); }
void backward_avx512_f32(const Backward& p) { run_backward<F32Traits>(p); }

}  // namespace bsr
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace bsr {
void forward_avx512_f32(const Forward& p) { forward_portable(p); }
void backward_avx512_f32(const Backward& p) { backward_portable(p); }
}}}
#endif

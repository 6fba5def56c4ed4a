// The AVX512-BF16 GEMM path (Zen 4, Cooper Lake, Sapphire Rapids): 8 x 48 vdpbf16ps
// micro-kernel on bf16 k-pair panels, fp32 accumulation. Only bf16 x bf16 problems come
// here; with the prologue (backward), g = grad_out * act'(y) is formed in fp32 while
// packing and rounded to bf16 once, as eager bf16 autograd would hold it.
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include "gemm/driver.h"
#include "gemm/microkernel_avx512.h"
#include "gemm/pack_avx512.h"
#include "gemm/dot_avx512.h"
#include "gemm/small_m_avx512.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

struct Avx512Bf16Traits {
  using Elem = uint16_t;
  static constexpr int MR = avx512::kMR, NR = avx512::kNR, KU = 2, NU = 16;
  // Same footprint as the fp32 path with half-size elements, so twice the k block: A
  // micro-panel 8 x 2048 bf16 (32 KiB), B micro-panel 2048 x 48 (192 KiB) streaming from
  // L2, A block 512 KiB in L2, B block 4 MiB in L3. Measured on Zen 4 (one core): KC = 512
  // -> 2048 took M = 1024 shapes with K >= 1024 from ~190 to ~210 GFLOP/s (of ~235), and
  // NC = 1024 (not 2048) kept M = 256 from falling behind as the B block outgrew L3's share.
  static constexpr int64_t KC = 2048, MC = 128, NC = 1024;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t kcp, uint16_t* dst) {
    avx512::pack_pairs<MR>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, kcp, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t kcp, int64_t n0, int cols, uint16_t* dst) {
    avx512::pack_pairs<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, kcp, dst);
  }
  static void kernel(int64_t kcp, const uint16_t* a, const uint16_t* b, const TileOut& o) {
    avx512::kernel_bf16(o.rows, o.cols)(kcp, a, b, o);
  }
  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  static void thread_begin() {}
  static void thread_end() {}
};

}  // namespace

void run_avx512_bf16(const Problem& p) {
  if (avx512::dot_applicable(p)) return avx512::run_dots(p);  // forward with N <= 4 or M <= 4
  if (avx512::wb_applicable(p, DType::kBF16)) return avx512::run_wb<true>(p);  // batch 33..64 forward
  drive<Avx512Bf16Traits>(p);
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_avx512_bf16(const Problem& p) { run_portable(p); }
}}}
#endif

// The AVX-512 fp32 GEMM path: 8 x 48 FMA micro-kernel on fp32 panels. bf16 and fp16
// operands are converted to fp32 while packed (the path for fp16 everywhere, and for
// bf16 where the CPU lacks AVX512-BF16). Compiled for the baseline target: every
// AVX-512 function carries its own target attribute (activation.h).
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include "gemm/driver.h"
#include "gemm/microkernel_avx512.h"
#include "gemm/pack_avx512.h"

namespace fastgan {
namespace cpu {
namespace gemm {
namespace {

struct Avx512F32Traits {
  using Elem = float;
  static constexpr int MR = avx512::kMR, NR = avx512::kNR, KU = 1, NU = 16;
  // Blocking for ~32-48 KiB L1d, 1-2 MiB L2 per core, 32 MiB shared L3 (Zen 4; SPR has
  // 48 KiB / 2 MiB): a k block of 256 makes an 8 x 256 A panel 8 KiB and a 256 x 48 B
  // micro-panel 48 KiB; the A block of MC x KC = 128 KiB and the B block of KC x NC =
  // 2 MiB stay in L2 / L3 across the loops that reuse them.
  static constexpr int64_t KC = 256, MC = 128, NC = 2048;

  static void pack_a(const Problem& p, int64_t m0, int rows, int64_t k0, int64_t kc, int64_t, float* dst) {
    avx512::pack_f32<MR>(operand_a(p.a, m0, k0), prologue_a(p, m0, k0), rows, kc, dst);
  }
  static void pack_b(const Problem& p, int64_t k0, int64_t kc, int64_t, int64_t n0, int cols, float* dst) {
    avx512::pack_f32<NR>(operand_b(p.b, k0, n0), Prologue{}, cols, kc, dst);
  }
  static void kernel(int64_t kc, const float* a, const float* b, const TileOut& o) {
    avx512::kernel_f32(o.rows, o.cols)(kc, a, b, o);
  }
  static Region b_region(const Problem& p, int64_t k0, int64_t kc, int64_t n0, int cols) {
    return operand_region(operand_b(p.b, k0, n0), cols, kc);
  }
  static void thread_begin() {}
  static void thread_end() {}
};

}  // namespace

void run_avx512_f32(const Problem& p) { drive<Avx512F32Traits>(p); }

}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_avx512_f32(const Problem& p) { run_portable(p); }
}}}
#endif

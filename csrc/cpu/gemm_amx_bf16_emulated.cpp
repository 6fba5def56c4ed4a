// The AMX bf16 GEMM kernel (gemm/amx_bf16_kernel.h) compiled against the scalar tile
// emulation (amx_emulation.h), for tests on machines without AMX: reached through the
// test-only op fastgan_ext::set_amx_emulation. Packing and epilogue are the same AVX-512
// code as on hardware; only the tile instructions are emulated (slowly: use small shapes).
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include "activation.h"
#include "amx_emulation.h"
#define FASTGAN_AMX_FEATURES FASTGAN_AVX512_FEATURES
#include "gemm/amx_bf16_kernel.h"

namespace fastgan {
namespace cpu {
namespace gemm {
void run_amx_bf16_emulated(const Problem& p) { drive<AmxBf16Traits>(p); }
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_amx_bf16_emulated(const Problem& p) { run_portable(p); }
}}}
#endif

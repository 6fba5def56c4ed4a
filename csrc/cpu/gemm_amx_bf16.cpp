// The AMX bf16 GEMM path on real tiles (Sapphire Rapids and later; chosen only when
// CPUID reports amx_tile + amx_bf16 and Linux granted the tile state, cpu_features.cpp).
// The kernel itself lives in gemm/amx_bf16_kernel.h, shared with the emulated build.
#include "gemm/gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "activation.h"
#define FASTGAN_AMX_FEATURES FASTGAN_AVX512_FEATURES ",amx-tile,amx-bf16"
#include "gemm/amx_bf16_kernel.h"

namespace fastgan {
namespace cpu {
namespace gemm {
void run_amx_bf16(const Problem& p) { drive<AmxBf16Traits>(p); }
}  // namespace gemm
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace gemm {
void run_amx_bf16(const Problem& p) { run_portable(p); }
}}}
#endif

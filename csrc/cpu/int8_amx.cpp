// The AMX int8 GEMM path on real tiles (Sapphire Rapids and later; chosen only when CPUID
// reports amx_tile + amx_int8 and Linux granted the tile state, cpu_features.cpp). The
// kernel lives in int8/amx_int8_kernel.h, shared with the emulated build.
#include "int8/int8.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "activation.h"
#define FASTGAN_I8_AMX_FEATURES FASTGAN_AVX512_FEATURES ",amx-tile,amx-int8"
#include "int8/amx_int8_kernel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
int64_t gemm_amx(const GemmArgs& g) { return run_amx(g); }
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t gemm_amx(const GemmArgs& g) { return gemm_portable(g); }
}}}
#endif

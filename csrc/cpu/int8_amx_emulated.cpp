// The AMX int8 GEMM (int8/amx_int8_kernel.h) compiled against the scalar tile emulation
// (amx_emulation.h + int8/amx_int8_emulation.h), for tests on machines without AMX: taken
// while the test-only switch fastgan_ext::set_amx_emulation is on (the same switch as the
// bf16 AMX emulation). Packing and epilogue are the AVX-512 code of the hardware path; only
// the tile instructions are emulated (slowly: use small shapes).
#include "int8/int8.h"

#if defined(__x86_64__)
#include "activation.h"
#include "int8/amx_int8_emulation.h"
#define FASTGAN_I8_AMX_FEATURES FASTGAN_AVX512_FEATURES
#include "int8/amx_int8_kernel.h"

namespace fastgan {
namespace cpu {
namespace int8 {
int64_t gemm_amx_emulated(const GemmArgs& g) { return run_amx(g); }
}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

#else  // not x86-64: dispatch never selects this path
namespace fastgan { namespace cpu { namespace int8 {
int64_t gemm_amx_emulated(const GemmArgs& g) { return gemm_portable(g); }
}}}
#endif

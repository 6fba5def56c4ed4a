// TEMPORARY stub while the kernel is written.
#include "gemm/gemm.h"
namespace fastgan { namespace cpu { namespace gemm {
void run_amx_bf16_emulated(const Problem& p) { run_portable(p); }
}}}

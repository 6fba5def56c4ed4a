// TEMPORARY stub while the kernel is written.
#include "gemm/gemm.h"
namespace fastgan { namespace cpu { namespace gemm {
void run_avx512_f32(const Problem& p) { run_portable(p); }
}}}

// Runtime CPU feature detection and the ISA cap used by every CPU kernel's dispatch.
//
// Kernels ask `isa_level()` (the best level this machine supports, lowered by the cap
// that tests and benchmarks set through fastgan_ext::set_cpu_isa) and pick the widest
// implementation at or below it. The portable level always exists, so the extension
// works on any x86-64 or aarch64 machine.
#pragma once
#include <cstdint>

namespace fastgan {
namespace cpu {

enum IsaLevel : int {
  kPortable = 0,    // plain C++ (auto-vectorised for the baseline target)
  kAvx2 = 1,        // AVX2 + FMA
  kAvx512 = 2,      // AVX-512 F/BW/DQ/VL
  kAvx512Vnni = 3,  // + AVX512-VNNI and AVX512-BF16 where present (see has_avx512_bf16)
  kAmx = 4,         // + AMX tile, int8 and bf16, with the OS permission granted
};

struct Features {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512_vnni = false, avx512_bf16 = false;
  bool amx_tile = false, amx_int8 = false, amx_bf16 = false;
  bool amx_permitted = false;  // arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) succeeded
};

// What the hardware and OS offer (detected once).
const Features& features();
// The highest level the machine supports.
IsaLevel max_isa_level();
// min(max_isa_level(), cap). Kernels call this on every launch.
IsaLevel isa_level();
// Lower (or restore) the cap; returns the previous cap. Thread-safe.
IsaLevel set_isa_cap(IsaLevel cap);
// Bit mask of Features, for Python (bit order as in cpu_features.cpp).
int64_t feature_bits();

}  // namespace cpu
}  // namespace fastgan

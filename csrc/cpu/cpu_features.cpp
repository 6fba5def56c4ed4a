#include "cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#define FASTGAN_X86 1
#endif

namespace fastgan {
namespace cpu {
namespace {

#ifdef FASTGAN_X86
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// Linux keeps AMX tile data off until a process asks for it; without this the
// first tile instruction raises SIGILL.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

Features detect() {
  Features f;
#ifdef FASTGAN_X86
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = ecx & (1u << 27);
  const bool fma = ecx & (1u << 12);
  if (!osxsave) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;            // XMM + YMM state
  const bool os_avx512 = (xcr0 & 0xe6) == 0xe6;       // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17);  // XTILECFG + XTILEDATA
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  f.fma = os_avx && fma;
  f.avx2 = os_avx && (ebx & (1u << 5));
  f.avx512f = os_avx512 && (ebx & (1u << 16));
  f.avx512dq = os_avx512 && (ebx & (1u << 17));
  f.avx512bw = os_avx512 && (ebx & (1u << 30));
  f.avx512vl = os_avx512 && (ebx & (1u << 31));
  f.avx512_vnni = os_avx512 && (ecx & (1u << 11));
  f.amx_bf16 = os_amx && (edx & (1u << 22));
  f.amx_tile = os_amx && (edx & (1u << 24));
  f.amx_int8 = os_amx && (edx & (1u << 25));
  unsigned eax1, ebx1, ecx1, edx1;
  if (__get_cpuid_count(7, 1, &eax1, &ebx1, &ecx1, &edx1)) {
    f.avx512_bf16 = os_avx512 && (eax1 & (1u << 5));
  }
  if (f.amx_tile) f.amx_permitted = request_amx_permission();
#endif
  return f;
}

IsaLevel detect_level(const Features& f) {
  const bool avx512 = f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma;
  if (avx512 && f.avx512_vnni && f.amx_tile && f.amx_int8 && f.amx_bf16 && f.amx_permitted) return kAmx;
  if (avx512 && f.avx512_vnni) return kAvx512Vnni;
  if (avx512) return kAvx512;
  if (f.avx2 && f.fma) return kAvx2;
  return kPortable;
}

// FASTGAN_CPU_ISA=portable|avx2|avx512|avx512_vnni|amx sets the initial cap.
IsaLevel initial_cap() {
  const char* env = std::getenv("FASTGAN_CPU_ISA");
  if (env == nullptr) return kAmx;
  const struct { const char* name; IsaLevel level; } names[] = {
      {"portable", kPortable}, {"avx2", kAvx2}, {"avx512", kAvx512},
      {"avx512_vnni", kAvx512Vnni}, {"amx", kAmx}};
  for (const auto& n : names)
    if (std::strcmp(env, n.name) == 0) return n.level;
  return kAmx;
}

std::atomic<int> g_cap{-1};

}  // namespace

const Features& features() {
  static const Features f = detect();
  return f;
}

IsaLevel max_isa_level() {
  static const IsaLevel level = detect_level(features());
  return level;
}

IsaLevel isa_level() {
  int cap = g_cap.load(std::memory_order_relaxed);
  if (cap < 0) {
    int expected = -1;
    g_cap.compare_exchange_strong(expected, static_cast<int>(initial_cap()));
    cap = g_cap.load(std::memory_order_relaxed);
  }
  const IsaLevel best = max_isa_level();
  return cap < best ? static_cast<IsaLevel>(cap) : best;
}

IsaLevel set_isa_cap(IsaLevel cap) {
  isa_level();  // make sure the environment's cap was read first
  return static_cast<IsaLevel>(g_cap.exchange(static_cast<int>(cap)));
}

int64_t feature_bits() {
  const Features& f = features();
  const bool bits[] = {f.avx2, f.fma, f.avx512f, f.avx512bw, f.avx512dq, f.avx512vl,
                       f.avx512_vnni, f.avx512_bf16, f.amx_tile, f.amx_int8, f.amx_bf16,
                       f.amx_permitted};
  int64_t out = 0;
  for (int i = 0; i < static_cast<int>(sizeof(bits)); ++i)
    if (bits[i]) out |= int64_t{1} << i;
  return out;
}

}  // namespace cpu
}  // namespace fastgan

// The CPU packed int8 weight (fastgan_ext::int8_pack_weight), made once per layer at
// conversion and kept in the module. One contiguous uint8 tensor:
//
//   bytes [0, 64)             Header: magic, layout version, N, K, Kp, panel count, offsets
//   bytes [comp_offset, ...)  int32 [panels * 16]: comp[n] = 128 * sum_k w[n, k] (mod 2^32;
//                             0 for padding columns), for the VNNI u8 x s8 trick below
//   bytes [data_offset, ...)  int8 panels: panel p holds columns 16p .. 16p+15 as
//                             [Kp / 4][16][4]: for each group of 4 k, 16 columns x 4 k bytes.
//                             Kp = K rounded up to 64 (the AMX tile depth); padding is zero.
//
// One 64-byte row of a panel is one zmm of B for AVX512-VNNI vpdpbusd (16 int32 lanes, each
// a dot product of 4 k) and one row of an AMX B tile; 16 consecutive rows (1 KiB) are the
// tdpbssd B tile of 64 k x 16 columns, loaded with a 64-byte stride. Both paths read the
// same blob: AMX multiplies s8 x s8 directly; VNNI multiplies (x + 128) as u8 by w as s8 and
// subtracts comp[n]. vpdpbusd does not saturate: its int32 lanes wrap mod 2^32, and so does
// comp, so acc = sum (x + 128) w - comp is exact mod 2^32, hence exact whenever the true
// result fits in int32 - which the Python layer guarantees (127 * 127 * K < 2^31). comp
// itself may exceed int32 for K near that bound; only its value mod 2^32 matters.
//
// int8_linear_fwd validates the header against xq and out_features, so a blob packed for a
// different shape (or anything that is not a blob) is refused before any kernel runs.
#pragma once

#include <cstdint>
#include <cstring>

#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {

constexpr uint32_t kPackedMagic = 0x50384746u;  // "FG8P" little-endian
constexpr uint32_t kPackedVersion = 1;

struct PackedHeader {
  uint32_t magic;
  uint32_t version;
  int64_t n, k, kp, panels;
  int64_t comp_offset, data_offset, total_bytes;
};
static_assert(sizeof(PackedHeader) == 64, "the header fits its 64 bytes");

inline PackedHeader packed_layout(int64_t n, int64_t k) {
  PackedHeader h{};
  h.magic = kPackedMagic;
  h.version = kPackedVersion;
  h.n = n, h.k = k;
  h.kp = round_up(k, kTileK);
  h.panels = ceil_div(n, kPanel);
  h.comp_offset = 64;
  h.data_offset = round_up(h.comp_offset + h.panels * kPanel * 4, 64);
  h.total_bytes = h.data_offset + h.panels * h.kp * kPanel;
  return h;
}

// Empty string when `blob` (of `bytes` bytes) is a valid blob for an [n, k] weight, else why not.
inline const char* check_packed(const uint8_t* blob, int64_t bytes, int64_t n, int64_t k, PackedHeader* out) {
  if (bytes < 64) return "it is too short to hold the packed header";
  PackedHeader h;
  std::memcpy(&h, blob, sizeof(h));
  if (h.magic != kPackedMagic) return "it is not a CPU packed weight (bad magic)";
  if (h.version != kPackedVersion) return "it was packed by another layout version";
  const PackedHeader want = packed_layout(h.n, h.k);
  if (h.kp != want.kp || h.panels != want.panels || h.comp_offset != want.comp_offset ||
      h.data_offset != want.data_offset || h.total_bytes != want.total_bytes || h.total_bytes != bytes)
    return "its header is inconsistent with its size";
  if (h.n != n || h.k != k) return "it was packed for a weight of another shape";
  *out = h;
  return "";
}

inline PackedView packed_view(const uint8_t* blob, const PackedHeader& h) {
  PackedView v;
  v.n = h.n, v.k = h.k, v.kp = h.kp, v.panels = h.panels;
  v.comp = reinterpret_cast<const int32_t*>(blob + h.comp_offset);
  v.data = reinterpret_cast<const int8_t*>(blob + h.data_offset);
  return v;
}

// Packs panels [p0, p1) of w (element (n, k) at w[n * rs + k * cs]) into the blob whose header
// `h` is already written; also their compensation sums.
inline void pack_panels(const int8_t* w, int64_t rs, int64_t cs, const PackedHeader& h, uint8_t* blob, int64_t p0,
                        int64_t p1) {
  int32_t* comp = reinterpret_cast<int32_t*>(blob + h.comp_offset);
  int8_t* data = reinterpret_cast<int8_t*>(blob + h.data_offset);
  for (int64_t p = p0; p < p1; ++p) {
    int8_t* panel = data + p * h.kp * kPanel;
    std::memset(panel, 0, static_cast<size_t>(h.kp * kPanel));
    for (int j = 0; j < kPanel; ++j) {
      const int64_t n = p * kPanel + j;
      int64_t sum = 0;
      if (n < h.n) {
        const int8_t* row = w + n * rs;
        for (int64_t k = 0; k < h.k; ++k) {
          const int8_t v = row[k * cs];
          panel[(k / kGroup) * (kPanel * kGroup) + j * kGroup + k % kGroup] = v;
          sum += v;
        }
      }
      // 128 * sum wraps mod 2^32 like the vpdpbusd accumulator (see above).
      comp[p * kPanel + j] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(sum * 128)));
    }
  }
}

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

// The block-sparse int8 weight on the CPU (fastgan_ext::bsr_int8_pack_weight), made once per
// layer and kept in the module next to its BSR index (row_ptr, col_idx: fastgan_kernels/ops/bsr.py).
// One contiguous uint8 tensor:
//
//   bytes [0, 64)             BsrPackedHeader: magic, version, N, K, bn, bk, nnz, offsets
//   bytes [comp_offset, ...)  int32 [nbr * bn]: comp[n] = 128 * sum of row n over its kept blocks
//                             (mod 2^32), the VNNI u8 x s8 compensation of packed_weight.h
//   bytes [data_offset, ...)  int8, kept block j at data + j * bn * bk, as bn / 16 panels of
//                             [bk / 4][16][4] (panel p: rows 16p .. 16p+15 of the block, i.e.
//                             16 output columns; 4 consecutive k per int32 lane)
//
// A block's panel is exactly a dense packed panel (packed_weight.h) restricted to the block's
// bk columns of K, so the VNNI k loop (vnni_avx512.h) runs over it unchanged, one block after
// the other, and pruned blocks are never read. The same bytes serve the portable path (tests
// of that path check the packing too). bn and bk are powers of two >= 16 (ops/bsr.py), so a
// block is whole panels and whole 4-k groups; the padding past N and K is zero in values.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "int8.h"

namespace fastgan {
namespace cpu {
namespace int8 {

constexpr uint32_t kBsrPackedMagic = 0x53384746u;  // "FG8S" little-endian
constexpr uint32_t kBsrPackedVersion = 1;

struct BsrPackedHeader {
  uint32_t magic, version;
  int32_t bn, bk;
  int64_t n, k, nnz;
  int64_t comp_offset, data_offset, total_bytes;
};
static_assert(sizeof(BsrPackedHeader) == 64, "the header fits its 64 bytes");

inline BsrPackedHeader bsr_packed_layout(int64_t n, int64_t k, int64_t bn, int64_t bk, int64_t nnz) {
  BsrPackedHeader h{};
  h.magic = kBsrPackedMagic, h.version = kBsrPackedVersion;
  h.bn = static_cast<int32_t>(bn), h.bk = static_cast<int32_t>(bk);
  h.n = n, h.k = k, h.nnz = nnz;
  h.comp_offset = 64;
  h.data_offset = round_up(h.comp_offset + ceil_div(n, bn) * bn * 4, 64);
  h.total_bytes = h.data_offset + nnz * bn * bk;
  return h;
}

// A validated blob's parts and the BSR index: what the kernels read.
struct BsrWeightView {
  int64_t bn = 0, bk = 0, nbr = 0, nbc = 0, nnz = 0;
  const int32_t* row_ptr = nullptr;  // [nbr + 1]
  const int32_t* col_idx = nullptr;  // [nnz]
  const int32_t* comp = nullptr;     // [nbr * bn]
  const int8_t* data = nullptr;      // [nnz][bn / 16][bk / 4][16][4]
  int64_t block_bytes() const { return bn * bk; }
  int64_t panel_bytes() const { return bk * kPanel; }  // one 16-column panel of a block
};

// g.M, g.N, g.K, the A operand and the epilogue as for the dense GEMM; g.w is unused.
struct BsrGemmArgs {
  GemmArgs g;
  BsrWeightView w;
};

// Block rows [r0, r1) of `values` [nnz, bn, bk] (row-major blocks) into the blob whose header
// is written, with their compensation sums.
inline void bsr_pack_rows(const int8_t* values, const int32_t* row_ptr, const BsrPackedHeader& h, uint8_t* blob,
                          int64_t r0, int64_t r1) {
  int32_t* comp = reinterpret_cast<int32_t*>(blob + h.comp_offset);
  int8_t* data = reinterpret_cast<int8_t*>(blob + h.data_offset);
  const int64_t bn = h.bn, bk = h.bk;
  for (int64_t r = r0; r < r1; ++r) {
    std::vector<int64_t> sums(static_cast<size_t>(bn), 0);
    for (int64_t j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
      const int8_t* src = values + j * bn * bk;
      int8_t* dst = data + j * bn * bk;
      for (int64_t i = 0; i < bn; ++i) {
        int8_t* panel = dst + (i / kPanel) * bk * kPanel;
        const int64_t col = i % kPanel;
        for (int64_t k = 0; k < bk; ++k) {
          const int8_t v = src[i * bk + k];
          panel[(k / kGroup) * (kPanel * kGroup) + col * kGroup + k % kGroup] = v;
          sums[i] += v;
        }
      }
    }
    // 128 * sum wraps mod 2^32 like the vpdpbusd accumulator (packed_weight.h).
    for (int64_t i = 0; i < bn; ++i)
      comp[r * bn + i] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(sums[i] * 128)));
  }
}

// The block-sparse paths (bsr_int8_*.cpp). Each returns -1, or (float A only) the first row
// holding NaN / Inf: then the output is left unspecified.
int64_t bsr_gemm_portable(const BsrGemmArgs& p);
int64_t bsr_gemm_vnni(const BsrGemmArgs& p);
// The VNNI path's driver with a scalar register tile and packer (tests on machines without VNNI).
int64_t bsr_gemm_vnni_emulated(const BsrGemmArgs& p);
// The same driver with AVX2 tiles (vpmaddubsw / vpmaddwd), for machines without AVX-512.
int64_t bsr_gemm_avx2(const BsrGemmArgs& p);

}  // namespace int8
}  // namespace cpu
}  // namespace fastgan

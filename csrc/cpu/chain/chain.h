// A chain of linear layers run as one call (fastgan_ext::mlp_chain, binding in ../mlp_chain.cpp).
//
//   h_0 = x,   h_{l+1} = act_l(h_l @ W_l^T + b_l),   y = h_L
//
// Each layer keeps the format it was converted to (Format below) and is computed by that
// format's existing kernel building blocks, called on one *slice* of the layer (rows
// [m0, m1) x columns [n0, n1)) from inside ONE parallel region for the whole chain:
//   dense fp32 / bf16   gemm::run (the GEMM core; single-threaded inside the region)
//   int8 dynamic/static int8::run_gemm on the packed blob (column slices are whole panels;
//                       the epilogue writes with the chain's leading dimension, Epilogue::ldo)
//                       at every batch (below AVX512-VNNI: the AVX2 vpmaddwd GEMM, which beats
//                       the former batch <= 8 dot-product path, chain/int8_avx2.cpp, there too)
//   block-sparse fp32   bsr::forward_* on a block-row slice of the BSR structure
// Activations are applied by those kernels' epilogues; the chain only checks the codes
// (activation_supported, the one place to widen when codes are added).
//
// Schedules (schedule.cpp):
//   columns  every layer split by output columns over the threads, layers separated by a
//            counter barrier (one atomic, no fork/join); small batches, or weights too large
//            to be read by every thread.
//   rows     each thread takes row tiles and runs every layer on them while they are hot in
//            its L2: no barrier at all; large batches whose weights fit in cache.
// Inter-layer activations live in grow-only scratch (the calling thread's for the shared
// column-schedule buffers, each worker's for row tiles): nothing is allocated per call in
// steady state but the output tensor.
#pragma once

#include <cstdint>

namespace fastgan {
namespace cpu {
namespace chain {

// Layer formats (the integer codes of fastgan_kernels/deploy/plan.py). New formats (e.g. a
// block-sparse int8 layer) take the next code and a case in layer.cpp.
enum class Format : int {
  kDenseF32 = 0,     // weight [N, K] fp32
  kDenseBF16 = 1,    // weight [N, K] bf16 (the bf16 GEMM when its input is bf16 too)
  kInt8Dynamic = 2,  // packed int8 blob; a float input is quantised per token inside the GEMM
  kInt8Static = 3,   // packed int8 blob; the input is int8 with the static scale in_scale
  kBsrF32 = 4,       // BSR values [nnz, bn, bk] fp32, row_ptr, col_idx (int32)
};
constexpr int kFormatCount = 5;

// How a layer's output (the next layer's input) is stored.
enum class Store : int { kF32 = 0, kBF16 = 1, kI8 = 2 };

inline int store_size(Store s) { return s == Store::kF32 ? 4 : s == Store::kBF16 ? 2 : 1; }

// Activation codes the chain accepts (those every kernel's epilogue implements).
inline bool activation_supported(int act) { return act >= 0 && act <= 4; }

struct Layer {
  Format format = Format::kDenseF32;
  int64_t N = 0, K = 0;
  int act = 0;
  float slope = 0.f;
  Store out = Store::kF32;   // how the output is stored (int8: requantised with out_scale)
  float out_scale = 1.f;
  float in_scale = 0.f;      // kInt8Static: the static input scale
  const float* bias = nullptr;  // [N] fp32 or null
  // dense: weight [N, K] contiguous (fp32 or bf16)
  const void* weight = nullptr;
  // int8: the packed blob (int8/packed_weight.h, already validated) and w_scale [N]
  const uint8_t* blob = nullptr;
  const float* w_scale = nullptr;
  // bsr: structure of W
  const void* values = nullptr;
  const int32_t* row_ptr = nullptr;
  const int32_t* col_idx = nullptr;
  int64_t bn = 0, bk = 0, nnz = 0;

  // Column slices of this layer start at multiples of this (a packed panel, a block row).
  int64_t column_unit() const;
  // Bytes of weight the layer reads per call (for the schedule's cache model).
  int64_t weight_bytes() const;
  // Whether the layer's input must be int8 (quantised before the layer when it arrives float).
  bool wants_int8_input() const { return format == Format::kInt8Static; }
};

// A strided 2-D activation: element (m, k) at data + (m * rs + k) * size(kind).
struct Act {
  const void* data = nullptr;
  int64_t rs = 0;
  Store kind = Store::kF32;
  int64_t cs = 1;  // only the chain input may have another column stride
};

// The output of one layer slice: element (m, n) at data + (m * ld + n) * size(kind).
struct Out {
  void* data = nullptr;
  int64_t ld = 0;
  Store kind = Store::kF32;
};

// Per-thread working memory a slice may need (grow-only, thread-local; layer.cpp).
void* thread_buffer(int slot, int64_t bytes);
enum BufferSlot : int {
  kSlotScales = 0, kSlotBsrOut = 1, kSlotQuant = 2, kSlotPing = 3, kSlotPong = 4,
  kSlotCount = 5
};

// Rows [0, rows) x columns [n0, n1) of layer L from `in` (already at its first row) into
// `out` (at its first row). One thread. Returns -1, or the first row (relative) whose float
// input held NaN / Inf (dynamic int8: the quantiser refuses it); the slice is then incomplete.
int64_t run_layer_slice(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1);

// Rows [r0, r1) of a float input quantised per tensor with `scale` into q (int8, ld K).
// Returns -1 or the first row holding NaN / Inf.
int64_t quantize_rows_static(const Act& in, int64_t K, float scale, int8_t* q, int64_t r0, int64_t r1);

// Dense fp32 layers at batch <= kSmallBatchRows on CPUs below AVX-512 (dot_avx2.cpp): weight
// rows read in place, once for every row of the batch, instead of the GEMM core's per-call pack.
constexpr int64_t kSmallBatchRows = 8;
bool small_batch_dense_applies(const Layer& L, const Act& in, const Out& out, int64_t rows);
void small_batch_dense(const Layer& L, const Act& in, const Out& out, int64_t rows, int64_t n0, int64_t n1);

enum class Schedule : int { kAuto = 0, kColumns = 1, kRows = 2 };

struct Error {
  int64_t layer = -1, row = -1;  // a non-finite input row found by a quantiser
};

// Runs the chain on x [M, K_0] into y [M, N_last] fp32 contiguous. Returns the first
// non-finite row found (Error.layer >= 0) instead of throwing, so the binding can phrase it.
Error run(const Layer* layers, int count, const Act& x, int64_t M, float* y, Schedule schedule);

// The schedule run() would take (tests and benchmarks report it).
Schedule choose_schedule(const Layer* layers, int count, int64_t M, int threads, Schedule requested);

}  // namespace chain
}  // namespace cpu
}  // namespace fastgan

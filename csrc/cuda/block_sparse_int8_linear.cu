// CUDA kernels of the block-sparse int8 ops of fastgan_ext (schemas in csrc/ops.cpp):
//
//   bsr_int8_pack_weight(values, row_ptr, col_idx, N, K)   values as a contiguous int8 [nnz, bn, bk]
//                                                          copy (the kernel reads the blocks in place)
//   bsr_int8_linear_fwd(xq, x_scale, w_packed, row_ptr, col_idx, ...)
//       acc = xq @ W^T in int32 over the kept blocks only (exact), then the dense int8 kernels'
//       epilogue (int8_common.cuh: I8Epilogue, act(acc * x_scale * w_scale + bias) as fp32 / bf16 /
//       fp16, requantised int8, or the raw int32 accumulator)
//
// Kernel (SIMT, __dp4a: 4 int8 products per instruction, sm_61+): one thread block per (16
// output columns of one block row, 64 batch rows); 256 threads, each 2 rows x 2 adjacent
// columns (so the epilogue's paired stores apply). Per kept block of the row and 16 k at a time,
// the x tile [64][16] and the block's [16 columns][16 k] are staged in shared memory as int32
// words (x bytes gathered through any strides, masked past K and M; the block's padding is zero);
// pruned blocks are never read. A block row with no kept block writes act(bias).
// Not yet tensor cores (mma.sync s8): a first CUDA path, compile-checked by nvcc, not run here.
// The dynamic (float x) op composes quantize_per_token and this kernel (ops/block_sparse_int8_linear.py).
#include <cstdint>
#include <optional>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "host.cuh"
#include "int8_common.cuh"

namespace {

using namespace fastgan::cuda;

constexpr int kTileM = 64, kTileN = 16, kTileK = 16, kThreads = 256;

struct BsrI8Problem {
  const int8_t* x = nullptr;
  int64_t x_sm = 0, x_sk = 0, m = 0, k = 0;
  const int8_t* values = nullptr;  // [nnz, bn, bk] contiguous
  const int32_t* row_ptr = nullptr;
  const int32_t* col_idx = nullptr;
  int bn = 0, bk = 0;
  I8Epilogue epi;
};

__global__ void __launch_bounds__(kThreads) bsr_int8_simt_kernel(const BsrI8Problem p) {
  __shared__ int32_t a_s[kTileM][kTileK / 4];
  __shared__ int32_t b_s[kTileN][kTileK / 4];
  const int tid = threadIdx.x;
  const int tiles_per_row = p.bn / kTileN;
  const int64_t r = blockIdx.x / tiles_per_row;                         // block row
  const int64_t n0 = r * p.bn + (blockIdx.x % tiles_per_row) * kTileN;  // first output column
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kTileM;
  const int c2 = tid % (kTileN / 2), rg = tid / (kTileN / 2);  // columns 2 c2 .. +1, rows 2 rg .. +1
  int32_t acc[2][2] = {{0, 0}, {0, 0}};
  const int32_t j0 = p.row_ptr[r], j1 = p.row_ptr[r + 1];
  for (int32_t j = j0; j < j1; ++j) {
    const int64_t kb = static_cast<int64_t>(p.col_idx[j]) * p.bk;  // the block's first k
    const int8_t* blk = p.values + (static_cast<int64_t>(j) * p.bn + (n0 - r * p.bn)) * p.bk;
    for (int kk = 0; kk < p.bk; kk += kTileK) {
      {  // x: one 4-byte word per thread, gathered byte by byte (any strides), zero past M / K
        const int row = tid / (kTileK / 4), w = tid % (kTileK / 4);
        const int64_t gm = m0 + row;
        uint32_t word = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t gk = kb + kk + 4 * w + e;
          const int8_t v = (gm < p.m && gk < p.k) ? p.x[gm * p.x_sm + gk * p.x_sk] : int8_t{0};
          word |= static_cast<uint32_t>(static_cast<uint8_t>(v)) << (8 * e);
        }
        a_s[row][w] = static_cast<int32_t>(word);
      }
      if (tid < kTileN * (kTileK / 4)) {  // the block: 16 columns x 16 k, aligned words
        const int col = tid / (kTileK / 4), w = tid % (kTileK / 4);
        b_s[col][w] = *reinterpret_cast<const int32_t*>(blk + static_cast<int64_t>(col) * p.bk + kk + 4 * w);
      }
      __syncthreads();
#pragma unroll
      for (int w = 0; w < kTileK / 4; ++w)
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int c = 0; c < 2; ++c) acc[i][c] = __dp4a(a_s[2 * rg + i][w], b_s[2 * c2 + c][w], acc[i][c]);
      __syncthreads();
    }
  }
  const float os = p.epi.kind == kOutI8 ? __ldg(p.epi.out_scale) : 1.f;
  const int64_t col = n0 + 2 * c2;
  float wsv[2], b[2];
  p.epi.col_params(col, wsv[0], b[0]);
  p.epi.col_params(col + 1, wsv[1], b[1]);
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t row = m0 + 2 * rg + i;
    p.epi.store2(row, col, acc[i][0], acc[i][1], p.epi.row_scale(row), wsv, b, os);
  }
}

void check_on(const at::Tensor& t, const at::Tensor& ref, const char* name) {
  TORCH_CHECK(t.defined() && t.is_cuda() && t.device() == ref.device(), "fastgan_ext::bsr_int8_linear_fwd (CUDA): ",
              name, " must be a tensor on ", ref.device());
}

at::Tensor bsr_int8_pack_weight_cuda(const at::Tensor& values, const at::Tensor& row_ptr, const at::Tensor& col_idx,
                                     int64_t out_features, int64_t in_features) {
  TORCH_CHECK(values.is_cuda() && values.dim() == 3 && values.scalar_type() == at::kChar,
              "fastgan_ext::bsr_int8_pack_weight (CUDA): values must be a 3-D int8 CUDA tensor");
  TORCH_CHECK(values.size(1) % kTileN == 0 && values.size(2) % kTileK == 0,
              "fastgan_ext::bsr_int8_pack_weight (CUDA): blocks must be multiples of 16 x 16");
  TORCH_CHECK(row_ptr.numel() == ceil_div(out_features, values.size(1)) + 1 && col_idx.numel() == values.size(0),
              "fastgan_ext::bsr_int8_pack_weight (CUDA): row_ptr / col_idx do not match values and out_features");
  (void)in_features;
  c10::cuda::CUDAGuard guard(values.device());
  return values.contiguous().clone();
}

at::Tensor bsr_int8_linear_fwd_cuda(const at::Tensor& xq, const at::Tensor& x_scale, const at::Tensor& w_packed,
                                    const at::Tensor& row_ptr, const at::Tensor& col_idx, const at::Tensor& w_scale,
                                    const std::optional<at::Tensor>& bias, int64_t out_features, int64_t activation,
                                    double negative_slope, at::ScalarType out_dtype,
                                    const std::optional<at::Tensor>& out_scale) {
  const char* op = "fastgan_ext::bsr_int8_linear_fwd (CUDA)";
  TORCH_CHECK(xq.is_cuda() && xq.dim() == 2 && xq.scalar_type() == at::kChar, op, ": xq must be a 2-D int8 CUDA tensor");
  check_on(w_packed, xq, "w_packed");
  check_on(row_ptr, xq, "row_ptr");
  check_on(col_idx, xq, "col_idx");
  TORCH_CHECK(w_packed.dim() == 3 && w_packed.scalar_type() == at::kChar && w_packed.is_contiguous() &&
                  w_packed.size(1) % kTileN == 0 && w_packed.size(2) % kTileK == 0,
              op, ": w_packed must be the contiguous int8 [nnz, bn, bk] of bsr_int8_pack_weight");
  TORCH_CHECK(row_ptr.scalar_type() == at::kInt && col_idx.scalar_type() == at::kInt && row_ptr.is_contiguous() &&
                  col_idx.is_contiguous(),
              op, ": row_ptr and col_idx must be contiguous int32");
  const int64_t m = xq.size(0), k = xq.size(1), n = out_features;
  const int bn = static_cast<int>(w_packed.size(1)), bk = static_cast<int>(w_packed.size(2));
  const int64_t nbr = ceil_div(n, bn);
  TORCH_CHECK(row_ptr.numel() == nbr + 1 && col_idx.numel() == w_packed.size(0), op,
              ": row_ptr / col_idx do not match w_packed and out_features");
  BsrI8Problem p;
  I8Epilogue& e = p.epi;
  switch (out_dtype) {
    case at::kFloat: e.kind = kOutF32; break;
    case at::kBFloat16: e.kind = kOutBF16; break;
    case at::kHalf: e.kind = kOutF16; break;
    case at::kChar: e.kind = kOutI8; break;
    case at::kInt: e.kind = kOutI32; break;
    default: TORCH_CHECK(false, op, ": unsupported out_dtype ", out_dtype);
  }
  if (e.kind != kOutI32) {
    check_on(x_scale, xq, "x_scale");
    check_on(w_scale, xq, "w_scale");
    TORCH_CHECK(x_scale.scalar_type() == at::kFloat && (x_scale.numel() == m || x_scale.numel() == 1) &&
                    w_scale.scalar_type() == at::kFloat && w_scale.numel() == n,
                op, ": x_scale must be float32 [M] or [1], w_scale float32 [N]");
    e.xs = x_scale.const_data_ptr<float>(), e.xs_stride = x_scale.numel() == 1 ? 0 : x_scale.stride(-1);
    e.ws = w_scale.const_data_ptr<float>(), e.ws_stride = w_scale.stride(-1);
    if (bias.has_value() && bias->defined()) {
      check_on(*bias, xq, "bias");
      TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == n, op, ": bias must be float32 [N]");
      e.bias = bias->const_data_ptr<float>(), e.bias_stride = bias->stride(-1);
    }
    if (e.kind == kOutI8) {
      TORCH_CHECK(out_scale.has_value() && out_scale->defined() && out_scale->numel() == 1, op,
                  ": out_dtype int8 needs out_scale [1]");
      check_on(*out_scale, xq, "out_scale");
      e.out_scale = out_scale->const_data_ptr<float>();
    }
    e.act = static_cast<int>(activation);
    e.slope = static_cast<float>(negative_slope);
  }
  c10::cuda::CUDAGuard guard(xq.device());
  at::Tensor out = at::empty({m, n}, xq.options().dtype(out_dtype));
  if (m == 0 || n == 0) return out;
  p.x = xq.const_data_ptr<int8_t>(), p.x_sm = xq.stride(0), p.x_sk = xq.stride(1), p.m = m, p.k = k;
  p.values = w_packed.const_data_ptr<int8_t>();
  p.row_ptr = row_ptr.const_data_ptr<int32_t>(), p.col_idx = col_idx.const_data_ptr<int32_t>();
  p.bn = bn, p.bk = bk;
  e.out = out.mutable_data_ptr(), e.ldc = n, e.rows = m, e.cols = n;
  e.pair_ok = n % 2 == 0 && reinterpret_cast<uintptr_t>(e.out) % (2 * out.element_size()) == 0;
  const dim3 grid(grid_size(nbr * (bn / kTileN)), static_cast<unsigned>(ceil_div(m, kTileM)));
  TORCH_CHECK(ceil_div(m, kTileM) <= 65535, op, ": too many rows for one launch: ", m);
  bsr_int8_simt_kernel<<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan_ext, CUDA, m) {
  m.impl("bsr_int8_pack_weight", &bsr_int8_pack_weight_cuda);
  m.impl("bsr_int8_linear_fwd", &bsr_int8_linear_fwd_cuda);
}

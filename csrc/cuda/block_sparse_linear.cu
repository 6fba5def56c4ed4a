// CUDA kernels of fastgan_ext::bsr_linear_fwd / bsr_linear_bwd (schemas in csrc/ops.cpp).
//
//   forward:   y = act(x @ W^T + b)   one CTA per (M tile of 64, block row, output sub-tile), looping over
//                                     the row's kept blocks only; bias + activation fused in the epilogue;
//                                     a block row without kept blocks writes act(b)
//   backward:  g = grad_out * act'(y) formed by the loaders (prologue), never stored
//              grad_x = g @ W         the same kernel over W^T's structure (t_row_ptr / t_col_idx / t_block
//                                     from ops/bsr.py:transpose_index): one CTA per (M tile, block column),
//                                     every output element written by exactly one CTA (no atomics)
//              grad_values            SDDMM: one CTA per (kept block, sub-tile[, batch split]); with few
//                                     blocks and a long batch, the batch is split and fp32 partial sums are
//                                     added in a fixed order by a second pass (deterministic, no atomics)
//              grad_bias = g.sum(0)   bias_grad.cuh's column-sum kernel with the same prologue
//
// fp16 / bf16 run on tensor cores (bsr_tc.cuh) where the device and this build allow (sm_80+, the same
// ptxVersion test as fused_linear.cu), fp32 (exact, no TF32) and the fallback on CUDA cores
// (bsr_simt.cuh). Zero padding: x / grad_out columns past K / N are never read (masked to zero, meeting
// the zero padding stored in values) and y / grad_x columns past N / K are never written.
// Not done here: heavy-first ordering of the lines (the Triton kernel sorts lines by kept-block
// count on the device); CTAs run in natural line order.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "bsr_host.cuh"
#include "bsr_simt.cuh"
#include "bsr_tc.cuh"

namespace {

using namespace fastgan::cuda;
using namespace fastgan::cuda::bsr_host;

// --- dense-output kernels (forward, grad_x) ---------------------------------------------------
template <typename T, class Cfg, bool GRADX>
void launch_dense_tc(BsrDenseProblem<T> p, int64_t lines, cudaStream_t stream) {
  constexpr int smem = bsr_tc_smem_bytes<Cfg, false, GRADX>();
  static_assert(smem <= 48 * 1024, "no opt-in to more shared memory needed");
  p.subs_log2 = log2_exact(p.d_in / Cfg::BK);
  p.out_subs = p.d_out / Cfg::BN;
  p.tiles_m = ceil_div(p.rows, Cfg::BM);
  const unsigned grid = grid_size(lines * p.out_subs * p.tiles_m);
  bsr_dense_tc_kernel<T, Cfg, GRADX><<<grid, Cfg::THREADS, smem, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, bool GRADX, int BN>
void dense_tc_bk(const BsrDenseProblem<T>& p, int64_t lines, cudaStream_t stream) {
  if (p.d_in == 16)
    launch_dense_tc<T, BsrDenseCfg<BN, 16>, GRADX>(p, lines, stream);
  else
    launch_dense_tc<T, BsrDenseCfg<BN, 32>, GRADX>(p, lines, stream);
}

template <typename T, int BN, bool GRADX>
void launch_dense_simt(BsrDenseProblem<T> p, int64_t lines, cudaStream_t stream) {
  p.subs_log2 = log2_exact(p.d_in / 8);
  p.out_subs = std::max(1, p.d_out / BN);
  p.tiles_m = ceil_div(p.rows, 64);
  bsr_dense_simt_kernel<T, BN, GRADX><<<grid_size(lines * p.out_subs * p.tiles_m), 4 * BN, 0, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, bool GRADX>
void launch_dense(BsrDenseProblem<T> p, int64_t lines, bool use_y, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  p.c_vec = out_vec(p.c, p.ldc, sizeof(p.c[0]));
  const int64_t a_si = p.a_si + (use_y ? p.pro.si : 0), a_sr = p.a_sr + (use_y ? p.pro.sr : 0);
  p.a_ifast = row_index_contiguous(a_si, a_sr, p.rows, p.depth);
  p.b_ifast = GRADX;  // values: contiguous along k, which is j for grad_x and r for the forward
  const int tile_n = std::min(p.d_out, 128);
  if constexpr (Num<T>::kIs16Bit) {
    if (device_info(c10::cuda::current_device()).sm80_code) {
      p.a_vec = chunk_loads_ok(p.a, p.a_si, p.a_sr, p.rows) &&
                (!use_y || chunk_loads_ok(p.pro.y, p.pro.si, p.pro.sr, p.rows));
      switch (tile_n) {
        case 16: dense_tc_bk<T, GRADX, 16>(p, lines, stream); break;
        case 32: dense_tc_bk<T, GRADX, 32>(p, lines, stream); break;
        case 64: dense_tc_bk<T, GRADX, 64>(p, lines, stream); break;
        default: dense_tc_bk<T, GRADX, 128>(p, lines, stream); break;
      }
      return;
    }
    launch_dense_simt<T, 32, GRADX>(p, lines, stream);  // fallback: one tile width, masked to the line
  } else {
    switch (tile_n) {
      case 16: launch_dense_simt<T, 16, GRADX>(p, lines, stream); break;
      case 32: launch_dense_simt<T, 32, GRADX>(p, lines, stream); break;
      case 64: launch_dense_simt<T, 64, GRADX>(p, lines, stream); break;
      default: launch_dense_simt<T, 128, GRADX>(p, lines, stream); break;
    }
  }
}

// --- SDDMM (grad_values) ----------------------------------------------------------------------
template <typename T, int BMT, int BNT, bool TC>
void launch_sddmm_tile(BsrSddmmProblem<T> p, int sms, cudaStream_t stream) {
  p.n_subs = std::max(1, p.bn / BMT);
  p.k_subs = std::max(1, p.bk / BNT);
  // Split the batch when the blocks alone cannot fill the GPU and the batch is long
  // (each split at least 4 x 32 rows); the splits' fp32 sums are added in order afterwards.
  const int64_t ctas = p.nnz * p.n_subs * p.k_subs;
  const int64_t m_tiles = ceil_div(p.m, 32);
  int64_t splits = 1;
  if (ctas < 2 * sms && m_tiles >= 8) splits = std::max<int64_t>(1, std::min(ceil_div(2 * sms, ctas), m_tiles / 4));
  p.m_per_split = ceil_div(m_tiles, splits) * 32;
  splits = ceil_div(p.m, p.m_per_split);
  p.splits = static_cast<int>(splits);
  at::Tensor partial;
  if (splits > 1) {
    const auto opts = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, c10::cuda::current_device());
    partial = at::empty({splits, p.nnz * p.bn * p.bk}, opts);
    p.partial = partial.mutable_data_ptr<float>();
  }
  const unsigned grid = grid_size(splits * ctas);
  if constexpr (TC) {
    using Cfg = BsrSddmmCfg<BMT, BNT>;
    constexpr int smem = bsr_tc_smem_bytes<Cfg, true, true>();
    static_assert(smem <= 48 * 1024, "no opt-in to more shared memory needed");
    bsr_sddmm_tc_kernel<T, Cfg><<<grid, Cfg::THREADS, smem, stream>>>(p);
  } else {
    bsr_sddmm_simt_kernel<T, BMT, BNT><<<grid, BMT * BNT / 16, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (splits > 1) {
    const int64_t total = p.nnz * p.bn * p.bk;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(total, 256), 8 * sms));
    bsr_sddmm_finish_kernel<T><<<blocks, 256, 0, stream>>>(p.partial, p.splits, total, p.gv);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename T, int BMT, bool TC>
void sddmm_bk(const BsrSddmmProblem<T>& p, int sms, cudaStream_t stream) {
  switch (std::min(p.bk, 64)) {
    case 16: launch_sddmm_tile<T, BMT, 16, TC>(p, sms, stream); break;
    case 32: launch_sddmm_tile<T, BMT, 32, TC>(p, sms, stream); break;
    default: launch_sddmm_tile<T, BMT, 64, TC>(p, sms, stream); break;
  }
}

template <typename T>
void launch_sddmm(BsrSddmmProblem<T> p, bool use_y, cudaStream_t stream) {
  const DeviceInfo info = device_info(c10::cuda::current_device());
  const int64_t a_si = p.g_sn + (use_y ? p.pro.si : 0), a_sr = p.g_sm + (use_y ? p.pro.sr : 0);
  p.a_ifast = row_index_contiguous(a_si, a_sr, p.n, p.m);
  p.b_ifast = row_index_contiguous(p.x_sk, p.x_sm, p.k, p.m);
  constexpr bool kTC = Num<T>::kIs16Bit;
  if (kTC && !info.sm80_code) {  // fallback: one tile shape, masked to the block
    launch_sddmm_tile<T, 32, 32, false>(p, info.sms, stream);
    return;
  }
  if (kTC) {  // I-major tiles: 16-byte chunks along n (g) and k (x)
    p.a_vec = chunk_loads_ok(p.g, p.g_sm, p.g_sn, p.m) && (!use_y || chunk_loads_ok(p.pro.y, p.pro.sr, p.pro.si, p.m));
    p.b_vec = chunk_loads_ok(p.x, p.x_sm, p.x_sk, p.m);
  }
  switch (std::min(p.bn, 64)) {
    case 16: sddmm_bk<T, 16, kTC>(p, info.sms, stream); break;
    case 32: sddmm_bk<T, 32, kTC>(p, info.sms, stream); break;
    default: sddmm_bk<T, 64, kTC>(p, info.sms, stream); break;
  }
}

// --- argument checks (what would otherwise read or write out of bounds) ----------------------
void check_operand(const at::Tensor& t, const at::Tensor& x, const char* name, int64_t dim) {
  TORCH_CHECK(t.defined() && t.device() == x.device(), "fastgan_ext (CUDA): ", name, " must be on ", x.device());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), "fastgan_ext (CUDA): ", name, " must have dtype ",
              x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.dim() == dim, "fastgan_ext (CUDA): ", name, " must be ", dim, "-D, got ", t.dim(), "-D");
}

// An int32 index vector of `numel` entries (csrc/ops.cpp: indices are int32 for every backend).
at::Tensor index_i32(const at::Tensor& t, const at::Tensor& x, const char* name, int64_t numel) {
  TORCH_CHECK(t.device() == x.device() && t.dim() == 1 && t.numel() == numel, "fastgan_ext (CUDA): ", name,
              " must be a 1-D tensor of ", numel, " entries on ", x.device(), ", got ", t.sizes(), " on ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kInt, "fastgan_ext (CUDA): ", name, " must be int32, got ", t.scalar_type());
  return t.contiguous();
}

// values as the kernels read it: contiguous, 16-byte aligned (the tensor-core loaders move
// 16-byte chunks of it with cp.async; a view at an odd offset is copied).
at::Tensor kernel_values(const at::Tensor& values) {
  at::Tensor v = values.contiguous();
  return reinterpret_cast<uintptr_t>(v.const_data_ptr()) % 16 == 0 ? v : v.clone();
}

// values [nnz, bn, bk] with power-of-two blocks in [16, 256]; returns (bn, bk).
std::pair<int, int> check_values(const at::Tensor& values, const at::Tensor& x) {
  check_operand(values, x, "values", 3);
  const int64_t bn = values.size(1), bk = values.size(2);
  for (int64_t b : {bn, bk})
    TORCH_CHECK(b >= 16 && b <= 256 && (b & (b - 1)) == 0,
                "fastgan_ext (CUDA): block sizes must be powers of two in [16, 256], got ", values.sizes());
  return {static_cast<int>(bn), static_cast<int>(bk)};
}

at::Tensor bsr_linear_fwd_cuda(const at::Tensor& x, const at::Tensor& values_in, const at::Tensor& row_ptr_in,
                               const at::Tensor& col_idx_in, const std::optional<at::Tensor>& bias,
                               int64_t out_features, int64_t activation, double negative_slope) {
  TORCH_CHECK(x.is_cuda(), "fastgan_ext::bsr_linear_fwd (CUDA): x must be a CUDA tensor");
  check_operand(x, x, "x", 2);
  const std::pair<int, int> block = check_values(values_in, x);
  const int bn = block.first, bk = block.second;
  const int64_t m = x.size(0), k = x.size(1), n = out_features;
  TORCH_CHECK(n >= 0, "bsr_linear_fwd: out_features must be >= 0, got ", n);
  const int64_t nbr = ceil_div(n, bn), nnz = values_in.size(0);
  const at::Tensor row_ptr = index_i32(row_ptr_in, x, "row_ptr", nbr + 1);
  const at::Tensor col_idx = index_i32(col_idx_in, x, "col_idx", nnz);
  const bool has_bias = bias.has_value() && bias->defined();
  if (has_bias) {
    check_operand(*bias, x, "bias", 1);
    TORCH_CHECK(bias->size(0) == n, "bsr_linear_fwd: bias must have ", n, " elements, got ", bias->size(0));
  }
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor values = kernel_values(values_in);
  at::Tensor y = at::empty({m, n}, x.options());
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    BsrDenseProblem<T> p;
    p.a = raw<T>(x), p.a_si = x.stride(0), p.a_sr = x.stride(1), p.rows = m, p.depth = k;
    p.values = raw<T>(values), p.v_si = bk, p.v_sr = 1, p.block_elems = static_cast<int64_t>(bn) * bk;
    p.d_in = bk, p.d_out = bn;
    p.ptr = row_ptr.const_data_ptr<int>(), p.idx = col_idx.const_data_ptr<int>();
    p.c = raw_mut<T>(y), p.ldc = n, p.cols = n;
    if (has_bias) p.epi.bias = raw<T>(*bias), p.epi.bias_stride = bias->stride(0);
    p.epi.act = static_cast<int>(activation);
    p.epi.slope = static_cast<float>(negative_slope);
    launch_dense<T, false>(p, nbr, false, stream);
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bsr_linear_bwd_cuda(
    const at::Tensor& grad_out, const at::Tensor& y, const at::Tensor& x, const at::Tensor& values_in,
    const at::Tensor& row_ptr_in, const at::Tensor& col_idx_in, const at::Tensor& t_row_ptr_in,
    const at::Tensor& t_col_idx_in, const at::Tensor& t_block_in, int64_t activation, double negative_slope,
    bool need_x, bool need_values, bool need_bias) {
  TORCH_CHECK(x.is_cuda(), "fastgan_ext::bsr_linear_bwd (CUDA): x must be a CUDA tensor");
  check_operand(x, x, "x", 2);
  check_operand(grad_out, x, "grad_out", 2);
  const std::pair<int, int> block = check_values(values_in, x);
  const int bn = block.first, bk = block.second;
  const int64_t m = x.size(0), k = x.size(1), n = grad_out.size(1), nnz = values_in.size(0);
  TORCH_CHECK(grad_out.size(0) == m, "bsr_linear_bwd: grad_out must have ", m, " rows, got ", grad_out.size(0));
  const int64_t nbc = ceil_div(k, bk);  // row_ptr is not needed: the SDDMM walks W^T's entries
  const bool use_y = activation != kIdentity;  // identity never reads y
  if (use_y) {
    check_operand(y, x, "y", 2);
    TORCH_CHECK(y.sizes() == grad_out.sizes(), "bsr_linear_bwd: y must be [", m, ", ", n, "], got ", y.sizes());
  }
  c10::cuda::CUDAGuard guard(x.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor values = kernel_values(values_in);
  at::Tensor gx, gv, gb;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    GradPrologue<T> pro;  // A(i = m, r = n) = g[m, n]
    pro.act = static_cast<int>(activation);
    pro.slope = static_cast<float>(negative_slope);
    if (use_y) pro.y = raw<T>(y), pro.si = y.stride(0), pro.sr = y.stride(1);
    if (need_x) {
      const at::Tensor t_row_ptr = index_i32(t_row_ptr_in, x, "t_row_ptr", nbc + 1);
      const at::Tensor t_col_idx = index_i32(t_col_idx_in, x, "t_col_idx", nnz);
      const at::Tensor t_block = index_i32(t_block_in, x, "t_block", nnz);
      gx = at::empty({m, k}, x.options());
      BsrDenseProblem<T> p;
      p.a = raw<T>(grad_out), p.a_si = grad_out.stride(0), p.a_sr = grad_out.stride(1), p.rows = m, p.depth = n;
      p.pro = pro;
      p.values = raw<T>(values), p.v_si = 1, p.v_sr = bk, p.block_elems = static_cast<int64_t>(bn) * bk;
      p.d_in = bn, p.d_out = bk;
      p.ptr = t_row_ptr.const_data_ptr<int>(), p.idx = t_col_idx.const_data_ptr<int>();
      p.perm = t_block.const_data_ptr<int>();
      p.c = raw_mut<T>(gx), p.ldc = k, p.cols = k;
      launch_dense<T, true>(p, nbc, use_y, stream);
    }
    if (need_values) {
      gv = at::empty({nnz, bn, bk}, values.options());
      if (m == 0) {
        gv.zero_();
      } else if (nnz > 0) {
        const at::Tensor col_idx = index_i32(col_idx_in, x, "col_idx", nnz);
        const at::Tensor t_col_idx = index_i32(t_col_idx_in, x, "t_col_idx", nnz);
        const at::Tensor t_block = index_i32(t_block_in, x, "t_block", nnz);
        BsrSddmmProblem<T> p;
        p.g = raw<T>(grad_out), p.g_sm = grad_out.stride(0), p.g_sn = grad_out.stride(1);
        p.pro = pro;
        std::swap(p.pro.si, p.pro.sr);  // A(i = n, r = m)
        p.x = raw<T>(x), p.x_sm = x.stride(0), p.x_sk = x.stride(1);
        p.m = m, p.n = n, p.k = k, p.bn = bn, p.bk = bk, p.nnz = nnz;
        p.col_idx = col_idx.const_data_ptr<int>();
        p.t_col_idx = t_col_idx.const_data_ptr<int>(), p.t_block = t_block.const_data_ptr<int>();
        p.gv = raw_mut<T>(gv);
        launch_sddmm<T>(p, use_y, stream);
      }
    }
    if (need_bias) {
      gb = at::empty({n}, values.options());
      launch_bias_grad<T>(grad_out, pro, gb, device_info(c10::cuda::current_device()).sms, stream);
    }
  });
  return {gx, gv, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan_ext, CUDA, m) {
  m.impl("bsr_linear_fwd", &bsr_linear_fwd_cuda);
  m.impl("bsr_linear_bwd", &bsr_linear_bwd_cuda);
}

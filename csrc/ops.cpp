// The schemas of every kernel op of the extension, in one place.
//
// These are the raw kernels, one implementation per device (registered with
// TORCH_LIBRARY_IMPL(fastgan_ext, CPU | CUDA, m) next to each kernel). The public,
// autograd-aware ops `fastgan::*` are defined in Python (fastgan_kernels/ops/), which
// validates arguments and picks a backend: this extension, Triton, or the reference.
// Keeping the public ops in Python means the package still works (Triton and the
// reference) where the extension could not be built.
//
// Conventions shared by every kernel here:
//   * arguments are validated in Python before a kernel runs; kernels TORCH_CHECK only
//     what would otherwise corrupt memory;
//   * `activation` is the integer code of fastgan_kernels/activations.py
//     (0 identity, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid);
//   * 2-D operands may have any strides; outputs are contiguous;
//   * gradients that were not requested come back as undefined tensors (None in Python).
#include <Python.h>
#include <torch/library.h>

#include "cpu/cpu_features.h"
#include "cpu/gemm/gemm.h"
#include "cpu/parallel.h"

namespace {

int64_t cpu_features() { return fastgan::cpu::feature_bits(); }
int64_t cpu_isa_level() { return static_cast<int64_t>(fastgan::cpu::isa_level()); }
int64_t cpu_max_isa_level() { return static_cast<int64_t>(fastgan::cpu::max_isa_level()); }
int64_t set_cpu_isa(int64_t cap) {
  TORCH_CHECK(cap >= 0 && cap <= 4, "set_cpu_isa: cap must be in 0..4, got ", cap);
  return static_cast<int64_t>(fastgan::cpu::set_isa_cap(static_cast<fastgan::cpu::IsaLevel>(cap)));
}
// Test-only: route bf16 CPU GEMMs through the AMX kernel compiled against the scalar tile
// emulation (csrc/cpu/amx_emulation.h), so the AMX tiling is tested on machines without AMX.
bool set_amx_emulation(bool on) { return fastgan::cpu::gemm::set_amx_emulation(on); }
// Test-only: allow (true, default) or forbid the vendor-GEMM fp32 path below AVX-512, so
// the AVX2 micro-kernel stays testable on AVX2 machines.
bool set_blas_gemm(bool on) { return fastgan::cpu::gemm::set_blas_gemm(on); }
// Test-only: the CPU GEMM path the fused-linear kernels take now for `dtype`.
std::string fused_linear_cpu_path(c10::ScalarType dtype) {
  using fastgan::cpu::gemm::DType;
  const DType dt = dtype == c10::kBFloat16 ? DType::kBF16 : dtype == c10::kHalf ? DType::kF16 : DType::kF32;
  return fastgan::cpu::gemm::path_name(fastgan::cpu::gemm::select_path(dt));
}
// Test-only: how the CPU kernels run in parallel in this build ("openmp", "gomp" or "aten").
std::string cpu_parallel_backend() { return fastgan::cpu::parallel_backend(); }

}  // namespace

TORCH_LIBRARY(fastgan_ext, m) {
  // --- CPU dispatch control -------------------------------------------------------
  m.def("cpu_features() -> int", &cpu_features);
  m.def("cpu_isa_level() -> int", &cpu_isa_level);
  m.def("cpu_max_isa_level() -> int", &cpu_max_isa_level);
  m.def("set_cpu_isa(int cap) -> int", &set_cpu_isa);
  m.def("set_amx_emulation(bool on) -> bool", &set_amx_emulation);           // tests only
  m.def("set_blas_gemm(bool on) -> bool", &set_blas_gemm);                   // tests only
  m.def("fused_linear_cpu_path(ScalarType dtype) -> str", &fused_linear_cpu_path);  // tests only
  m.def("cpu_parallel_backend() -> str", &cpu_parallel_backend);                      // tests only

  // --- fused linear + activation: y = act(x @ weight.T + bias) ----------------------
  // x [M, K], weight [N, K], bias [N] or None, same floating dtype; y [M, N] in x.dtype.
  m.def("fused_linear_fwd(Tensor x, Tensor weight, Tensor? bias, int activation, "
        "float negative_slope) -> Tensor");
  // g = grad_out * act'(y) is formed while the gradient GEMMs load grad_out (prologue);
  // grad_x = g @ weight, grad_weight = g.T @ x, grad_bias = g.sum(0).
  m.def("fused_linear_bwd(Tensor grad_out, Tensor y, Tensor x, Tensor weight, int activation, "
        "float negative_slope, bool need_x, bool need_weight, bool need_bias) "
        "-> (Tensor, Tensor, Tensor)");
  // fused_linear_fwd with fused_linear_bwd as its autograd formula, in C++ (x may be N-D):
  // the eager-training fast path (csrc/fused_linear_autograd.cpp). Autograd kernel only.
  m.def("fused_linear(Tensor x, Tensor weight, Tensor? bias, int activation, float negative_slope) -> Tensor");

  // --- block-sparse linear: y = act(x @ W.T + bias), W [N, K] in BSR (fastgan_kernels/ops/bsr.py) --
  // values [nnz_blocks, bn, bk] (contiguous, x.dtype), row_ptr [ceil(N/bn)+1] and col_idx [nnz_blocks]
  // int32; N = out_features and K = x.shape[1] need not be multiples of the block (padding is zero
  // in values and masked off in x and y). Only kept blocks are read.
  m.def("bsr_linear_fwd(Tensor x, Tensor values, Tensor row_ptr, Tensor col_idx, Tensor? bias, "
        "int out_features, int activation, float negative_slope) -> Tensor");
  // g = grad_out * act'(y) (prologue, as in fused_linear_bwd); grad_x = g @ W walks W.T's structure
  // (t_row_ptr [ceil(K/bk)+1], t_col_idx = block rows, t_block = indices into values, all int32,
  // from ops/bsr.py:transpose_index); grad_values [nnz_blocks, bn, bk] only for kept blocks.
  m.def("bsr_linear_bwd(Tensor grad_out, Tensor y, Tensor x, Tensor values, Tensor row_ptr, "
        "Tensor col_idx, Tensor t_row_ptr, Tensor t_col_idx, Tensor t_block, int activation, "
        "float negative_slope, bool need_x, bool need_values, bool need_bias) -> (Tensor, Tensor, Tensor)");

  // --- int8 linear ---------------------------------------------------------------------
  // Symmetric per-token quantisation: scale[m] = max|x[m, :]| / 127 (1/127 for an all-zero row),
  // q = clamp(round_half_even(x / scale), -127, 127). Raises on a non-finite row (the NaN would
  // otherwise vanish silently).
  m.def("quantize_per_token(Tensor x) -> (Tensor, Tensor)");
  // Static per-tensor quantisation with a given scale [1] (fp32).
  m.def("quantize_per_tensor(Tensor x, Tensor scale) -> Tensor");
  // The device's packed layout of an int8 weight wq [N, K], made once at conversion and kept in
  // the module (CPU: 16-column VNNI/AMX panels plus the u8 compensation sums).
  m.def("int8_pack_weight(Tensor wq) -> Tensor");
  // acc = xq [M, K] (int8) @ wq.T (int32), then the epilogue
  //   y = act(acc * x_scale[m] * w_scale[n] + bias[n])   (x_scale [M] per token, or [1] static)
  // written as out_dtype: float32/bfloat16/float16, or int8 requantised with out_scale [1]
  // (clamp(round(y / out_scale), -127, 127)), or int32 = the raw accumulator (no epilogue; tests).
  m.def("int8_linear_fwd(Tensor xq, Tensor x_scale, Tensor w_packed, Tensor w_scale, Tensor? bias, "
        "int out_features, int activation, float negative_slope, ScalarType out_dtype, "
        "Tensor? out_scale) -> Tensor");
  // Dynamic int8 linear in one kernel: x [M, K] float (float32/bfloat16/float16, any strides) is
  // quantised per token (exactly quantize_per_token, raising on a non-finite row) while the GEMM
  // packs it, then int8_linear_fwd's GEMM and epilogue run with x_scale = those per-row scales.
  // Bit for bit quantize_per_token + int8_linear_fwd; CPU only (GPU backends compose the two).
  m.def("int8_linear_dynamic_fwd(Tensor x, Tensor w_packed, Tensor w_scale, Tensor? bias, int out_features, "
        "int activation, float negative_slope, ScalarType out_dtype, Tensor? out_scale) -> Tensor");

  // --- block-sparse int8 linear: int8_linear with W [N, K] int8 in BSR blocks -------------------
  // values [nnz_blocks, bn, bk] int8 (per-output-channel w_scale [N]), row_ptr / col_idx int32 as for
  // bsr_linear_fwd (fastgan_kernels/ops/bsr.py). The device's packed layout, made once per layer
  // (CPU: each kept block as 16-column VNNI panels, plus the u8 compensation sums per row).
  m.def("bsr_int8_pack_weight(Tensor values, Tensor row_ptr, Tensor col_idx, int out_features, "
        "int in_features) -> Tensor");
  // int8_linear_fwd's contract (x_scale [M] or [1], epilogue, out_dtype incl. int8 / int32) with only
  // the kept blocks read; a block row with no kept block gives act(bias).
  m.def("bsr_int8_linear_fwd(Tensor xq, Tensor x_scale, Tensor w_packed, Tensor row_ptr, Tensor col_idx, "
        "Tensor w_scale, Tensor? bias, int out_features, int activation, float negative_slope, "
        "ScalarType out_dtype, Tensor? out_scale) -> Tensor");
  // The same on a float x quantised per token while the GEMM packs it (as int8_linear_dynamic_fwd).
  m.def("bsr_int8_linear_dynamic_fwd(Tensor x, Tensor w_packed, Tensor row_ptr, Tensor col_idx, "
        "Tensor w_scale, Tensor? bias, int out_features, int activation, float negative_slope, "
        "ScalarType out_dtype, Tensor? out_scale) -> Tensor");
  // --- a chain of linear layers in one call (csrc/cpu/mlp_chain.cpp, fastgan_kernels/deploy) --
  // x [M, K0] float32 through every layer of the packed description (tensors, meta, scalars;
  // layout in csrc/cpu/mlp_chain.cpp), each in its own format (fp32 / bf16 / int8 dynamic or
  // static / block-sparse); y [M, N_last] float32. schedule: 0 auto, 1 columns, 2 rows.
  m.def("mlp_chain(Tensor x, Tensor[] tensors, int[] meta, float[] scalars, int schedule) -> Tensor");
  m.def("mlp_chain_out(Tensor x, Tensor[] tensors, int[] meta, float[] scalars, int schedule, "
        "Tensor(a!) out) -> ()");
}

// `import fastgan_kernels._C` loads the library above; the module itself is empty.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

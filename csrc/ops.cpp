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

namespace {

int64_t cpu_features() { return fastgan::cpu::feature_bits(); }
int64_t cpu_isa_level() { return static_cast<int64_t>(fastgan::cpu::isa_level()); }
int64_t cpu_max_isa_level() { return static_cast<int64_t>(fastgan::cpu::max_isa_level()); }
int64_t set_cpu_isa(int64_t cap) {
  TORCH_CHECK(cap >= 0 && cap <= 4, "set_cpu_isa: cap must be in 0..4, got ", cap);
  return static_cast<int64_t>(fastgan::cpu::set_isa_cap(static_cast<fastgan::cpu::IsaLevel>(cap)));
}

}  // namespace

TORCH_LIBRARY(fastgan_ext, m) {
  // --- CPU dispatch control -------------------------------------------------------
  m.def("cpu_features() -> int", &cpu_features);
  m.def("cpu_isa_level() -> int", &cpu_isa_level);
  m.def("cpu_max_isa_level() -> int", &cpu_max_isa_level);
  m.def("set_cpu_isa(int cap) -> int", &set_cpu_isa);

  // --- fused linear + activation: y = act(x @ weight.T + bias) ----------------------
  // x [M, K], weight [N, K], bias [N] or None, same floating dtype; y [M, N] in x.dtype.
  m.def("fused_linear_fwd(Tensor x, Tensor weight, Tensor? bias, int activation, "
        "float negative_slope) -> Tensor");
  // g = grad_out * act'(y) is formed while the gradient GEMMs load grad_out (prologue);
  // grad_x = g @ weight, grad_weight = g.T @ x, grad_bias = g.sum(0).
  m.def("fused_linear_bwd(Tensor grad_out, Tensor y, Tensor x, Tensor weight, int activation, "
        "float negative_slope, bool need_x, bool need_weight, bool need_bias) "
        "-> (Tensor, Tensor, Tensor)");
}

// `import fastgan_kernels._C` loads the library above; the module itself is empty.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

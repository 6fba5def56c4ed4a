// fastgan_ext::fused_linear: the forward kernel with the backward kernel as its autograd
// formula, both in C++: the eager-training fast path of the extension backends.
//
// The public op fastgan::fused_linear (Python, fastgan_kernels/ops/fused_linear.py) is what
// torch.compile and torch.export trace. In eager training, though, a Python autograd node per
// layer costs tens of microseconds in the engine (a Python backward, ctx bookkeeping, the GIL),
// as much as a batch-64 GAN layer's GEMMs. This op keeps the whole node in C++: the Python entry
// point validates the arguments, picks cpu_ext or cuda_ext, and calls it when a gradient is
// needed and nothing traces (ops/_fastpath.py). Same formula as the Python op: the backward
// reads the saved output y and forms grad_out * act'(y) inside the gradient GEMMs' prologue
// (fused_linear_bwd). gelu, gelu_tanh and silu are not functions of y: for them this node keeps
// the pre-activation z instead (the forward kernel runs with the identity epilogue, then one
// elementwise ATen pass gives y) and the prologue forms grad_out * act'(z) from it.
//
// x may be N-D ([..., K]); it is viewed as [M, K] for the kernels. Double backward
// (create_graph=True) is refused: the backward kernel has no derivative of its own.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_unsafe_view.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/silu.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "cpu/activation.h"  // the activation codes (header only; no CPU kernel is called here)

namespace {

namespace act = fastgan::cpu;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kIdentity = act::kIdentity;

// y = act(z) for the activations whose backward keeps z (the same functions as the references).
at::Tensor activation_from_z(const at::Tensor& z, int64_t activation) {
  switch (activation) {
    case act::kGelu: return at::gelu(z);
    case act::kGeluTanh: return at::gelu(z, "tanh");
    default: return at::silu(z);  // act::kSilu
  }
}

at::Tensor fwd_kernel(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      int64_t activation, double slope) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastgan_ext::fused_linear_fwd", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                                               int64_t, double)>();
  return op.call(x, weight, bias, activation, slope);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bwd_kernel(const at::Tensor& grad, const at::Tensor& y,
                                                          const at::Tensor& x, const at::Tensor& weight,
                                                          int64_t activation, double slope, bool need_x,
                                                          bool need_weight, bool need_bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastgan_ext::fused_linear_bwd", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, const at::Tensor&, int64_t, double,
                                                                bool, bool, bool)>();
  return op.call(grad, y, x, weight, activation, slope, need_x, need_weight, need_bias);
}

class FusedLinearFunction : public torch::autograd::Function<FusedLinearFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, int64_t activation, double slope) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const int64_t K = weight.size(1), N = weight.size(0);
    const at::Tensor x2 = x.dim() == 2 ? x : x.reshape({-1, K});
    at::Tensor y2, saved;
    if (act::saves_preactivation(static_cast<int>(activation))) {  // gelu / silu: keep z for act'(z)
      saved = fwd_kernel(x2, weight, bias, kIdentity, 0.0);
      y2 = activation_from_z(saved, activation);
    } else {  // act'(.) from y; identity needs nothing of it
      y2 = fwd_kernel(x2, weight, bias, activation, slope);
      if (activation != kIdentity) saved = y2;
    }
    ctx->save_for_backward({x2, weight, saved});
    ctx->saved_data["activation"] = activation;
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
    ctx->saved_data["x_sizes"] = x.sizes().vec();
    if (x.dim() == 2) return y2;
    std::vector<int64_t> out(x.sizes().begin(), x.sizes().end());
    out.back() = N;
    // Not a view of y2 (a view output of a custom Function gets a view-replay grad_fn): the
    // same storage under a new shape, as aten's matmul returns its result.
    return at::_unsafe_view(y2, out);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "fused_linear: double backward (create_graph=True) is not supported; use F.linear and the "
                "activation where a second derivative is needed (e.g. a gradient penalty)");
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x2 = saved[0], &weight = saved[1], &y2 = saved[2];
    const int64_t activation = ctx->saved_data["activation"].toInt();
    const double slope = ctx->saved_data["slope"].toDouble();
    const bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    // needs_input_grad counts tensor inputs only: an absent bias has no index.
    const bool need_b = ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2);
    variable_list out(5);
    if (!(need_x || need_w || need_b) || !grads[0].defined()) return out;
    const int64_t N = weight.size(0);
    const at::Tensor g2 = grads[0].dim() == 2 ? grads[0] : grads[0].reshape({-1, N});
    // y2: y, or z for gelu / silu. Identity ignores it: any [M, N] tensor of the right dtype stands in.
    auto [gx, gw, gb] = bwd_kernel(g2, y2.defined() ? y2 : g2, x2, weight, activation, slope, need_x, need_w, need_b);
    if (need_x) out[0] = gx.view(ctx->saved_data["x_sizes"].toIntVector());
    if (need_w) out[1] = gw;
    if (need_b) out[2] = gb;
    return out;
  }
};

at::Tensor fused_linear_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                 int64_t activation, double negative_slope) {
  return FusedLinearFunction::apply(x, weight, bias, activation, negative_slope);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgan_ext, Autograd, m) { m.impl("fused_linear", &fused_linear_autograd); }

"""@triton.jit helpers shared by every fastgan Triton kernel: activations and the GEMM epilogue.

Activation codes are the ones of :class:`fastgan_kernels.activations.Activation`
(0 identity, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid); every helper takes the code
as a ``tl.constexpr``, so each kernel specialisation contains only the branch it
uses. All arithmetic is float32: callers pass the fp32 accumulator (forward) or
fp32 upcasts of ``grad_out`` / ``y`` (backward) and round once when they store.

* :func:`apply_activation` -- ``act(z)``, the forward epilogue.
* :func:`bias_activation_epilogue` -- ``act(acc + bias[col])`` on an accumulator
  tile, bias optional; the block-sparse and int8 kernels apply it after their own
  scaling.
* :func:`grad_from_output` -- ``g * act'(z)`` written with the saved output
  ``y = act(z)``: the backward prologue applied to ``grad_out`` tiles as they are
  loaded. Exact for LeakyReLU because its slope is >= 0, so ``sign(y) == sign(z)``.

tanh and sigmoid are built from ``tl.exp`` (available in every Triton >= 3.0 and in
the interpreter) in forms that cannot overflow; their absolute error is a few fp32
ulps, far inside the project's tolerances.
"""
import triton
import triton.language as tl

# Codes as plain Python ints, for launch code (the jit functions spell them out).
IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID = 0, 1, 2, 3, 4


@triton.jit
def tanh_f32(z):
    """tanh(z) = sign(z) * (1 - e) / (1 + e) with e = exp(-2|z|) in (0, 1]: no overflow, NaN propagates."""
    e = tl.exp(-2.0 * tl.abs(z))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0, -t, t)


@triton.jit
def sigmoid_f32(z):
    """1 / (1 + exp(-z)) through e = exp(-|z|) in (0, 1], so nothing overflows: z < 0 gives e / (1 + e)."""
    e = tl.exp(-tl.abs(z))
    r = 1.0 / (1.0 + e)
    return tl.where(z < 0, e * r, r)


@triton.jit
def apply_activation(z, ACTIVATION: tl.constexpr, negative_slope):
    """act(z) for an fp32 tile. ``z < 0`` tests (not ``z > 0``) keep NaN as NaN, like torch."""
    if ACTIVATION == 1:  # relu
        z = tl.where(z < 0, 0.0, z)
    elif ACTIVATION == 2:  # leaky_relu
        z = tl.where(z < 0, z * negative_slope, z)
    elif ACTIVATION == 3:  # tanh
        z = tanh_f32(z)
    elif ACTIVATION == 4:  # sigmoid
        z = sigmoid_f32(z)
    return z


@triton.jit
def bias_activation_epilogue(acc, bias_ptr, offs_n, mask_n, stride_bias, HAS_BIAS: tl.constexpr,
                             ACTIVATION: tl.constexpr, negative_slope):
    """act(acc + bias[offs_n]) for an fp32 [BLOCK_M, BLOCK_N] tile; columns outside ``mask_n`` read bias 0."""
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_n * stride_bias, mask=mask_n, other=0.0)
        acc = acc + bias.to(tl.float32)[None, :]
    return apply_activation(acc, ACTIVATION, negative_slope)


@triton.jit
def grad_from_output(g, y, ACTIVATION: tl.constexpr, negative_slope):
    """g * act'(z) from the output y = act(z) (fp32 tiles); identity ignores y."""
    if ACTIVATION == 1:  # relu: 1 where y > 0
        g = tl.where(y > 0, g, 0.0)
    elif ACTIVATION == 2:  # leaky_relu: 1 where y > 0, else the slope
        g = tl.where(y > 0, g, g * negative_slope)
    elif ACTIVATION == 3:  # tanh: 1 - y^2
        g = g * (1.0 - y * y)
    elif ACTIVATION == 4:  # sigmoid: y (1 - y)
        g = g * (y * (1.0 - y))
    return g

"""@triton.jit helpers shared by every fastgan Triton kernel: activations and the GEMM epilogue.

Activation codes are the ones of :class:`fastgan_kernels.activations.Activation`
(0 identity, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid, 5 gelu, 6 gelu_tanh, 7 silu,
8 elu); every helper takes the code as a ``tl.constexpr``, so each kernel
specialisation contains only the branch it uses. :func:`apply_activation` and
:func:`grad_from_output` are the only places that branch on the code: a new
activation is one branch in each (every kernel calls them).
``negative_slope`` is the activation's parameter (LeakyReLU's slope, ELU's alpha). All arithmetic is float32: callers pass the fp32 accumulator (forward) or
fp32 upcasts of ``grad_out`` / ``y`` (backward) and round once when they store.

* :func:`apply_activation` -- ``act(z)``, the forward epilogue.
* :func:`bias_activation_epilogue` -- ``act(acc + bias[col])`` on an accumulator
  tile, bias optional; the block-sparse and int8 kernels apply it after their own
  scaling.
* :func:`grad_from_output` -- ``g * act'(z)`` from the tensor the backward saved:
  the output ``y = act(z)``, or z itself for gelu, gelu_tanh and silu
  (``activations.saves_preactivation``); the backward prologue applied to
  ``grad_out`` tiles as they are loaded. Exact for LeakyReLU / ELU because slope and
  alpha are >= 0, so ``sign(y) == sign(z)``.

tanh and sigmoid are built from ``tl.exp`` (available in every Triton >= 3.0 and in
the interpreter) in forms that cannot overflow; their absolute error is a few fp32
ulps, far inside the project's tolerances.
"""
import triton
import triton.language as tl

# Codes as plain Python ints, for launch code (the jit functions spell them out).
IDENTITY, RELU, LEAKY_RELU, TANH, SIGMOID, GELU, GELU_TANH, SILU, ELU = 0, 1, 2, 3, 4, 5, 6, 7, 8

NUM_ACTIVATIONS = 9


def check_code(activation, where: str) -> None:
    """The launchers' check of the activation code (the Python ops have checked names already)."""
    if int(activation) not in range(NUM_ACTIVATIONS):
        raise ValueError(f"{where} (triton): activation code must be in 0..{NUM_ACTIVATIONS - 1}, got {activation}")


# (Constants are written as literals inside the jit functions: module-level floats are
# not usable there in every Triton version / the interpreter.)
# 0.70710678 = 1/sqrt(2), 0.39894228 = 1/sqrt(2 pi), 0.79788456 = sqrt(2/pi), 0.134145 = 3 * 0.044715


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
def gelu_tanh_inner(z):
    """tanh(sqrt(2/pi) (z + 0.044715 z^3)), shared by gelu_tanh and its derivative."""
    return tanh_f32(0.7978845608028654 * (z + 0.044715 * z * z * z))


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
    elif ACTIVATION == 5:  # gelu (erf)
        z = 0.5 * z * (1.0 + tl.math.erf(z * 0.7071067811865476))
    elif ACTIVATION == 6:  # gelu_tanh
        z = 0.5 * z * (1.0 + gelu_tanh_inner(z))
    elif ACTIVATION == 7:  # silu
        z = z * sigmoid_f32(z)
    elif ACTIVATION == 8:  # elu: exp of where(z > 0, 0, z) cannot overflow and keeps NaN
        z = tl.where(z > 0, z, negative_slope * (tl.exp(tl.where(z > 0, 0.0, z)) - 1.0))
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
    """g * act'(z) from the saved tile ``y`` (fp32): the output act(z), or z for codes 5-7; identity ignores it."""
    if ACTIVATION == 1:  # relu: 1 where y > 0
        g = tl.where(y > 0, g, 0.0)
    elif ACTIVATION == 2:  # leaky_relu: 1 where y > 0, else the slope
        g = tl.where(y > 0, g, g * negative_slope)
    elif ACTIVATION == 3:  # tanh: 1 - y^2
        g = g * (1.0 - y * y)
    elif ACTIVATION == 4:  # sigmoid: y (1 - y)
        g = g * (y * (1.0 - y))
    elif ACTIVATION == 5:  # gelu, from z: Phi(z) + z phi(z)
        g = g * (0.5 * (1.0 + tl.math.erf(y * 0.7071067811865476)) + y * tl.exp(-0.5 * y * y) * 0.3989422804014327)
    elif ACTIVATION == 6:  # gelu_tanh, from z
        t = gelu_tanh_inner(y)
        g = g * (0.5 * (1.0 + t) + 0.5 * y * (1.0 - t * t) * (0.7978845608028654 * (1.0 + 0.134145 * y * y)))
    elif ACTIVATION == 7:  # silu, from z: s (1 + z (1 - s))
        s = sigmoid_f32(y)
        g = g * (s * (1.0 + y * (1.0 - s)))
    elif ACTIVATION == 8:  # elu: 1 where y > 0, else y + alpha (= alpha e^z)
        g = tl.where(y > 0, g, g * (y + negative_slope))
    return g

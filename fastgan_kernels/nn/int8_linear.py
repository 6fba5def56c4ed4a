"""Int8Linear: int8 weights (per output channel) and int8 activations, fused epilogue."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import activations, backends
from ..ops import _validate, int8_linear as q8


class Int8Linear(nn.Module):
    """``act(x @ W.T + b)`` with ``W`` int8 per output channel and ``x`` quantised to int8.

    Input: a float tensor, quantised per token (``input_quant="dynamic"``) or with the calibrated
    per-tensor ``input_scale`` (``"static"``); or an int8 tensor already quantised with
    ``input_scale`` (from a previous Int8Linear that requantised its output: no float round trip).

    Output: float (``out_dtype``, default float32) or, with ``output_scale`` set, int8 requantised
    for the next layer.

    Buffers (all in ``state_dict``): ``weight_int8`` [N, K], ``weight_scale`` [N], ``bias`` [N]
    (fp32), ``input_scale`` and ``output_scale`` ([1], NaN when unused). The backend's packed
    weight is derived from them (re-made after ``.to()`` and ``load_state_dict``).

    ``check_finite``: refuse NaN / Inf inputs (free on the CPU; one host sync per call on GPUs,
    see fastgan_kernels.ops.int8_linear).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "identity",
                 negative_slope: Optional[float] = None, input_quant: str = "dynamic",
                 out_dtype: torch.dtype = torch.float32, backend: str = "auto", device=None,
                 check_finite: bool = True, *, alpha: Optional[float] = None):
        super().__init__()
        # negative_slope holds the activation's parameter: LeakyReLU's slope or ELU's alpha
        negative_slope = activations.resolve_param(activation, negative_slope, alpha)
        self._init_int8(in_features, out_features, activation, negative_slope, input_quant, out_dtype, backend,
                        check_finite)
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8, device=device))
        self._init_scales(bias, device)

    def _init_int8(self, in_features, out_features, activation, negative_slope, input_quant, out_dtype, backend,
                   check_finite) -> None:
        """The checked settings of an int8 layer (shared with BlockSparseInt8Linear)."""
        q8.check_in_features(in_features, type(self).__name__)
        act = activations.check_activation(activation, negative_slope)
        if input_quant not in ("dynamic", "static"):
            raise ValueError(f"input_quant must be 'dynamic' or 'static', got {input_quant!r}")
        if out_dtype not in q8.FLOAT_OUT:
            raise TypeError(f"out_dtype must be one of {q8.FLOAT_OUT} (int8 output: set output_scale), got {out_dtype}")
        self.in_features, self.out_features = in_features, out_features
        self.activation, self.negative_slope = activations.name(act), float(negative_slope)
        self.input_quant, self.out_dtype = input_quant, out_dtype
        self.backend = backends.check_backend(backend)
        self.check_finite = bool(check_finite)

    def _init_scales(self, bias: bool, device) -> None:
        """The scale and bias buffers (after the weight's), the packed weight and the flags."""
        f32 = {"device": device, "dtype": torch.float32}
        self.register_buffer("weight_scale", torch.ones(self.out_features, **f32))
        self.register_buffer("bias", torch.zeros(self.out_features, **f32) if bias else None)
        self.register_buffer("input_scale", torch.full((1,), float("nan"), **f32))
        self.register_buffer("output_scale", torch.full((1,), float("nan"), **f32))
        self.register_buffer("weight_packed", None, persistent=False)
        self._repack()
        self._derive_flags()

    @classmethod
    def from_linear(cls, linear: nn.Linear, activation: str = "identity", negative_slope: Optional[float] = None,
                    input_quant: str = "dynamic", input_scale: Optional[float] = None,
                    output_scale: Optional[float] = None, out_dtype: torch.dtype = torch.float32,
                    backend: str = "auto", *, alpha: Optional[float] = None) -> "Int8Linear":
        """Quantise ``linear``'s weight per output channel (symmetric, no zero point)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, activation, negative_slope,
                     input_quant, out_dtype, backend, device=linear.weight.device, alpha=alpha)
        wq, ws = q8.quantize_weight(linear.weight.detach().float(), "reference")
        module.weight_int8.copy_(wq)
        module.weight_scale.copy_(ws)
        if linear.bias is not None:
            module.bias.copy_(linear.bias.detach().float())
        module._repack()  # the packed weight derives from weight_int8, just replaced
        module.set_scales(input_scale, output_scale)
        return module

    def set_scales(self, input_scale: Optional[float] = None, output_scale: Optional[float] = None) -> None:
        """Static input scale (for static mode / int8 inputs) and int8 output scale (None: float output)."""
        for name, value in (("input_scale", input_scale), ("output_scale", output_scale)):
            if value is not None and not (float(value) > 0 and float(value) < float("inf")):
                raise ValueError(f"{name} must be a positive finite float, got {value}")
            getattr(self, name).fill_(float("nan") if value is None else float(value))
        self._derive_flags()
        if self.input_quant == "static" and input_scale is None:
            raise ValueError("input_quant='static' needs an input_scale (from calibration)")

    def _derive_flags(self) -> None:
        """Python flags mirroring the scale buffers (NaN = unset), read on every forward without a sync."""
        self._has_input_scale = not bool(torch.isnan(self.input_scale).any())
        self._int8_out = not bool(torch.isnan(self.output_scale).any())

    @property
    def int8_output(self) -> bool:
        return self._int8_out

    def _repack(self) -> None:
        try:
            self.weight_packed = q8.pack_weight(self.weight_int8, self.backend)
        except RuntimeError:  # a forced backend unavailable on this device: forward will say why
            self.weight_packed = None

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._repack()
        return self

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._repack()
        self._derive_flags()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The module checked its own tensors when it was built or loaded; per call only x is checked.
        # Buffers are read from _buffers directly: nn.Module.__getattr__ costs ~0.7 us per access.
        buf = self._buffers
        w = buf["weight_int8"]
        _validate.check_tensor(x, "Int8Linear: x")
        _validate.check_input(x, self.in_features, "Int8Linear")
        if x.device != w.device:
            raise _validate.DeviceMismatchError(f"Int8Linear: x must be on the module's device {w.device}, got "
                                                f"{x.device} (expected all tensors to be on the same device, as "
                                                f"nn.Linear does)")
        out_dtype, out_scale = self._output_args(x)
        if x.dtype == torch.int8:
            xq, xs = x, buf["input_scale"]
        else:
            _validate.check_float(x, "Int8Linear: x")
            if self.input_quant == "dynamic":  # one kernel: the per-token quantisation is fused into the GEMM
                return q8.run_int8_linear_dynamic(x, w, buf["weight_scale"], buf["bias"], buf["weight_packed"],
                                                  self.activation, self.negative_slope, out_dtype, out_scale,
                                                  self.backend, self.check_finite)
            xs = buf["input_scale"]
            xq = q8.run_quantize_per_tensor(x, xs, self.backend, self.check_finite)
        return q8.run_int8_linear(xq, xs, w, buf["weight_scale"], buf["bias"], buf["weight_packed"], self.activation,
                                  self.negative_slope, out_dtype, out_scale, self.backend)

    def _output_args(self, x: torch.Tensor):
        """(out_dtype, out_scale) of a call on ``x``; an int8 ``x`` needs the static input scale."""
        if x.dtype == torch.int8 and not self._has_input_scale:
            raise ValueError(f"{type(self).__name__} got an int8 input but has no input_scale; "
                             f"set_scales(input_scale=...)")
        if self._int8_out:
            return torch.int8, self._buffers["output_scale"]
        return (x.dtype if x.dtype in q8.FLOAT_OUT else self.out_dtype), None

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        act = activations.describe(self.activation, self.negative_slope)
        out = f"int8(scale={self.output_scale.item():.4g})" if self.int8_output else str(self.out_dtype)
        inp = (f"static(scale={self.input_scale.item():.4g})" if self.input_quant == "static"
               else "dynamic per-token")
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"activation={act}, input={inp}, output={out}, backend={self.backend}")

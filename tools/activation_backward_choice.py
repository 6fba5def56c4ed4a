"""How the backward of gelu / gelu_tanh / silu gets z: keep it, or recompute it? (docs/design.md)

Times, per layer shape (fp32, CPU, torch's threads), interleaved in one run so that the
shared CPU's noise hits every variant alike (median of rounds):

  fused fwd      inference: the kernel with the activation in its epilogue (no grad)
  keep-z step    forward + backward as eager training runs them (the C++ autograd node):
                 the identity-epilogue kernel gives z, one ATen pass gives y, the backward
                 prologue applies act'(z)
  recompute step forward + backward through the custom op (what torch.compile traces): fused
                 forward, and the backward first recomputes z with the identity kernel
  eager step     F.linear + the activation, forward + backward (PyTorch)

Run: PYTHONPATH=. python tools/activation_backward_choice.py [--act gelu] [--rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import fastgan_kernels as fk
from fastgan_kernels import activations


def _time(fn, reps: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--act", default="gelu", choices=("gelu", "gelu_tanh", "silu"))
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--shapes", default="64x256x512,64x512x784,1024x256x512,1024x512x784")
    args = ap.parse_args()
    for spec in args.shapes.split(","):
        m, k, n = (int(v) for v in spec.split("x"))
        x = torch.randn(m, k, requires_grad=True)
        w = (torch.randn(n, k) / k ** 0.5).requires_grad_()
        b = torch.zeros(n, requires_grad=True)
        g = torch.randn(m, n)

        def fused_fwd():
            with torch.no_grad():
                fk.fused_linear(x, w, b, args.act)

        def keep_z():
            fk.fused_linear(x, w, b, args.act).backward(g)

        def recompute():
            torch.ops.fastgan.fused_linear(x, w, b, args.act, 0.0, "auto").backward(g)

        def eager():
            activations.apply(torch.nn.functional.linear(x, w, b), args.act).backward(g)

        variants = {"fused fwd": fused_fwd, "keep-z step": keep_z, "recompute step": recompute, "eager step": eager}
        reps = max(1, int(2e8 / (2 * m * k * n)))
        times = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times[name].append(_time(fn, reps))
        med = {name: statistics.median(v) for name, v in times.items()}
        row = "  ".join(f"{name} {t:8.1f} us" for name, t in med.items())
        print(f"{args.act} M={m} K={k} N={n} (threads {torch.get_num_threads()}): {row}  "
              f"keep-z/recompute {med['keep-z step'] / med['recompute step']:.2f}")


if __name__ == "__main__":
    main()

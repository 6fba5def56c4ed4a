"""Time the fused layer's bias gradient (the column sums of grad_out * act'(y)) and a whole
fused-layer training step (forward + backward: grad_x, grad_weight, grad_bias), in the
extension that ``fastgan_kernels`` resolves to on PYTHONPATH.

Compare two builds under the same load by alternating them, e.g. before / after a kernel
change (a copy of the old package in OLD):

    for i in 1 2 3; do
      PYTHONPATH=OLD python tools/bench_bias_grad.py --tag before
      PYTHONPATH=$PWD python tools/bench_bias_grad.py --tag after
    done

and take each line's best. Prints one line per (shape, activation, measurement) in us.
"""
from __future__ import annotations

import argparse
import time

import torch

import fastgan_kernels  # noqa: F401  (loads the extension)
from fastgan_kernels import activations
from fastgan_kernels.ops.fused_linear import fused_linear

SHAPES = ((64, 1024, 2048), (1024, 1024, 2048), (1024, 2048, 1024))
ACTS = ("leaky_relu", "gelu")


def best_us(fn, reps: int, clock=time.perf_counter) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", default="")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (1: steadier on a shared machine)")
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall",
                    help="thread: CPU time of the calling thread (with --threads 1, blind to time spent descheduled)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.manual_seed(0)
    for m, k, n in SHAPES:
        x = torch.randn(m, k)
        w = torch.randn(n, k) / k ** 0.5
        b = torch.randn(n) / k ** 0.5
        g = torch.randn(m, n)
        for act_name in ACTS:
            act, slope = int(activations.check_activation(act_name, 0.2)), activations.resolve_param(act_name)
            y = torch.ops.fastgan_ext.fused_linear_fwd(x, w, b, act, slope)

            def bias_only():
                torch.ops.fastgan_ext.fused_linear_bwd(g, y, x, w, act, slope, False, False, True)

            xs, ws, bs = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()

            def train_step():
                xs.grad = ws.grad = bs.grad = None
                fused_linear(xs, ws, bs, act_name, backend="cpu_ext").backward(g)

            for what, fn in (("bias_grad", bias_only), ("train_step", train_step)):
                print(f"{args.tag}\t{m}x{k}x{n}\t{act_name}\t{what}\t{best_us(fn, args.reps, clock):.1f}", flush=True)


if __name__ == "__main__":
    main()

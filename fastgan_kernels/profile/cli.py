"""``fastgan-kernels profile``: generator inference for a fixed time, with throughput, energy and clocks."""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    from .models import BACKENDS, MODELS

    p = subparsers.add_parser("profile", help="profile generator inference (images/s, energy, clocks)",
                              description="Run generator inference for a fixed time and report images/s and, on a "
                                          "GPU with NVML, images per joule, power, clocks and throttle reasons.")
    p.add_argument("--model", default="seed", choices=sorted(MODELS))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--backend", default="auto", choices=BACKENDS,
                   help="eager, compile (torch.compile), or the fused model with a fastgan backend")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to run the timed loop")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up after the first call")
    p.add_argument("--interval", type=float, default=0.1, help="NVML sampling interval in seconds")
    p.add_argument("--trace", metavar="F", help="write a torch.profiler Chrome trace of a few steps to F")
    p.add_argument("--json", metavar="F", help="write the result as JSON")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..bench.registry import parse_dtype
    from . import runner

    try:
        options = runner.ProfileOptions(model=args.model, batch=args.batch, backend=args.backend, device=args.device,
                                        dtype=parse_dtype(args.dtype), seconds=args.seconds, warmup_s=args.warmup,
                                        trace=args.trace, interval_s=args.interval)
        result = runner.run(options)
    except (ValueError, RuntimeError) as exc:
        print(f"fastgan-kernels profile: {exc}", file=sys.stderr)
        return 2
    print(runner.to_text(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0

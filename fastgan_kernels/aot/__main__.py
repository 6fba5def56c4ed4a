"""``python -m fastgan_kernels.aot``: the ahead-of-time compile check (also ``tools/gpu_resources.py``).

Compiles every Triton kernel variant for sm_80 and sm_90 on the CPU, prints the counts of configs
that do not fit the SM's shared memory or spill registers (over all configs, and over the configs
the autotuner may pick after pruning), optionally writes docs/gpu_resources.md and a JSON dump,
and with ``--check`` exits 1 when a variant the autotuner may pick fails to compile, does not
fit, or spills (with ``--cuda``, also when a CUDA C++ kernel spills).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    os.environ.pop("TRITON_INTERPRET", None)  # before triton is imported: the GPU config lists
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, without its warning
    from . import report, sweep

    p = argparse.ArgumentParser(prog="python -m fastgan_kernels.aot", description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="80,90", help="compute capabilities, comma separated (default 80,90)")
    p.add_argument("--subset", action="store_true",
                   help="one config per kernel launch and arch: the largest the autotuner may pick (CI)")
    p.add_argument("--kernels", help="only these launched attributes (comma separated, e.g. _forward_gemm)")
    p.add_argument("--workers", type=int, default=2, help="compile processes (default 2)")
    p.add_argument("--no-cache", action="store_true", help="recompile everything (see $FASTGAN_AOT_CACHE)")
    p.add_argument("--markdown", help="write the tables here (docs/gpu_resources.md)")
    p.add_argument("--json", help="write every variant's resources here")
    p.add_argument("--cuda", action="store_true",
                   help="also nvcc -Xptxas -v csrc/cuda/*.cu (checkout only) and add its table (slow: minutes per source)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if a variant the autotuner may pick does not compile, does not fit, or spills")
    args = p.parse_args(argv)

    archs = tuple(int(a) for a in args.archs.split(","))
    kernels = set(args.kernels.split(",")) if args.kernels else None
    vs = sweep.variants(archs, subset=args.subset, kernels=kernels)
    print(f"compiling {len(vs)} variants for {', '.join(f'sm_{a}' for a in archs)} "
          f"with {args.workers} processes", flush=True)
    wall = sweep.run(vs, workers=args.workers, use_cache=not args.no_cache)
    print(report.summary_text(vs, wall))
    uncovered = sweep.uncovered_kernels()
    for name in uncovered:
        print(f"not covered: {name} is a @triton.jit kernel no aot_launches() entry launches")
    cuda_md, cuda_bad, cuda_reported = "", [], []
    if args.cuda:
        from . import cuda
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        kernels = cuda.compile_all(root, archs, use_cache=not args.no_cache)
        cuda_md = cuda.markdown(kernels)
        cuda_bad = cuda.problems([k for k in kernels if k.arch in report.GATED_ARCHS])
        cuda_reported = cuda.problems([k for k in kernels if k.arch not in report.GATED_ARCHS])
    if args.markdown:
        command = "python -m fastgan_kernels.aot " + " ".join(argv if argv is not None else sys.argv[1:])
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown)), exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(report.markdown(vs, wall, command.strip()) + cuda_md)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        rows = [{"kernel": v.kernel, "launch": v.launch.label, "config": v.config_name, "arch": v.arch,
                 "kept": v.kept, **v.result} for v in vs]
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    bad = report.problems([v for v in vs if v.arch in report.GATED_ARCHS]) + cuda_bad
    for line in bad:
        print("PROBLEM:", line)
    for line in report.problems([v for v in vs if v.arch not in report.GATED_ARCHS]) + cuda_reported:
        print("REPORTED (arch not gated):", line)
    if args.check and (bad or uncovered):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

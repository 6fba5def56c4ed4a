"""``fastgan-kernels bench``: run the benchmark suites and write the reports."""
from __future__ import annotations

import argparse
import os
import sys


def _shapes(text: str) -> list[tuple[int, ...]]:
    """"64x100x256,1024x512x784" -> [(64, 100, 256), (1024, 512, 784)]."""
    try:
        return [tuple(int(v) for v in part.lower().split("x")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"shapes look like 64x100x256,1024x512x784; got {text!r}") from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="run the benchmark suite and write reports",
                              description="Time every provider of each op (eager, torch.compile, the fastgan "
                                          "backends) on the same inputs in the same run, check them against the "
                                          "reference, and print / write the report.")
    p.add_argument("--op", action="append", help="op to benchmark (repeatable; default: every suite)")
    p.add_argument("--suite", metavar="NAME",
                   help="run a whole-system suite instead of the op suites: serve (the HTTP service under load, "
                        "batched vs unbatched; needs the serve extra)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when a GPU is visible, else cpu")
    cases = p.add_mutually_exclusive_group()
    cases.add_argument("--quick", action="store_true", help="fewer shapes and shorter timing (about a minute on CPU)")
    cases.add_argument("--full", action="store_true",
                       help="each suite's full grid (block-sparse: every sparsity x block x shape; int8: every "
                            "layer at both batches); the default is a representative subset (about 5 minutes "
                            "on the 2-core CPU for all suites)")
    p.add_argument("--provider", action="append",
                   help="only these providers (repeatable; eager is always kept), e.g. fastgan:reference")
    p.add_argument("--dtype", action="append", help="only these dtypes (repeatable): fp32, bf16, fp16")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU: torch.set_num_threads(N) for every provider (default: torch's choice); "
                        "1 gives steadier figures on a shared machine")
    p.add_argument("--cuda-graph", action="store_true",
                   help="GPU: time CUDA-graph replays (warm L2) instead of per-call events with L2 flush")
    p.add_argument("--json", metavar="F", help="write the report as JSON")
    p.add_argument("--markdown", metavar="F", help="write the report as Markdown (docs/benchmarks.md)")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR")
    p.add_argument("--from-json", metavar="F", help="render an earlier JSON report instead of running")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--budget-s", type=float, metavar="S",
                   help="start no new case after S seconds (the rest is listed as skipped); with --json the "
                        "report is saved after every case, so a run cut short still leaves its figures")
    # Hidden knobs for tests and quick experiments.
    p.add_argument("--shapes", type=_shapes, help=argparse.SUPPRESS)
    p.add_argument("--max-cases", type=int, help=argparse.SUPPRESS)
    p.add_argument("--min-run-time", type=float, help=argparse.SUPPRESS)
    p.set_defaults(func=main)
    return p


def _parent_dirs(*paths) -> None:
    for path in paths:
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)


def main(args: argparse.Namespace) -> int:
    from . import render, report as report_mod, runner, timing
    from .registry import parse_dtype

    _parent_dirs(args.json, args.markdown)
    if args.suite:
        from .registry import run_system_suite

        try:
            return run_system_suite(args.suite, args)
        except (ValueError, RuntimeError, ImportError) as exc:
            print(f"fastgan-kernels bench: {exc}", file=sys.stderr)
            return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.from_json:
        report = report_mod.Report.from_json(args.from_json)
    else:
        config = timing.TimingConfig.quick() if args.quick else timing.TimingConfig()
        config.cuda_graph = args.cuda_graph
        if args.min_run_time is not None:  # the user's timing: the suites' own settings step aside
            config.min_run_time = args.min_run_time
            config.max_run_time = max(config.max_run_time, args.min_run_time)
        try:
            options = runner.RunOptions(
                ops=args.op, device=args.device, quick=args.quick, providers=args.provider,
                dtypes=[parse_dtype(d) for d in args.dtype] if args.dtype else None,
                shapes=args.shapes, max_cases=args.max_cases, timing=config, progress=not args.no_progress,
                budget_s=args.budget_s, full=args.full, suite_timing=args.min_run_time is None)
            save = (lambda rep: rep.to_json(args.json)) if args.json else None
            report = runner.run(options, on_case=save)
        except (ValueError, RuntimeError) as exc:
            print(f"fastgan-kernels bench: {exc}", file=sys.stderr)
            return 2
    print(render.to_text(report))
    if args.json:
        report.to_json(args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        render.write_markdown(report, args.markdown)
        print(f"wrote {args.markdown}")
    if args.plot:
        from . import plots

        paths = plots.plot_report(report, args.plot)
        print(f"wrote {len(paths)} plots into {args.plot}")
    for r in report.inaccurate_peers():
        print(f"note: peer {r.provider} on {r.op} {r.case} missed the accuracy bar "
              f"(max abs err {r.max_abs_err}); its row is kept and marked", file=sys.stderr)
    failures = report.failures()
    if failures:
        print(f"{len(failures)} row(s) errored or gave wrong results", file=sys.stderr)
        return 1
    return 0

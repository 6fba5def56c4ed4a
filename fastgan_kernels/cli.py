"""``fastgan-kernels``: a thin dispatcher over subcommand modules.

Each module in ``SUBCOMMANDS`` exposes ``add_parser(subparsers)``, which adds its
subparser and sets ``func`` (args -> exit code). A new subcommand (train, generate,
convert, ...) is one more line here. ``python -m fastgan_kernels.cli`` works too.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

SUBCOMMANDS = (
    "fastgan_kernels.bench.cli",
    "fastgan_kernels.profile.cli",
    "fastgan_kernels.train.cli",
    "fastgan_kernels.serve.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgan-kernels",
                                     description="Fused, block-sparse and int8 linear kernels for GAN generators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""What a benchmark is made of: cases, providers and suites, and the list of suites.

A :class:`Suite` is one op: the cases it times (shape, dtype, device, FLOPs, bytes and,
for sparse ops, the non-zero FLOPs), how to make a case's inputs, the reference the
errors are measured against, and the providers that compute the op (eager PyTorch,
torch.compile, peers, each fastgan backend). Adding an op's benchmark is one module
under ``bench/suites/`` that defines ``SUITE`` plus its name in
``bench.suites.SUITE_MODULES``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.int8: "int8"}
CASE_SETS = ("quick", "default", "full")
SHORT_DTYPE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "int8": "int8"}


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def parse_dtype(name: str) -> torch.dtype:
    aliases = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    name = aliases.get(name, name)
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


@dataclass(frozen=True)
class Case:
    """One shape x dtype x device of an op, with its work counts."""

    op: str
    shape: tuple[tuple[str, int], ...]    # ordered (name, size) pairs, e.g. (("M", 64), ("K", 100), ("N", 256))
    dtype: torch.dtype
    device: str                           # "cpu" or "cuda"
    flops: float                          # dense-equivalent floating-point operations of one call
    bytes: float                          # bytes one call must read and write at least
    nonzero_flops: Optional[float] = None  # sparse ops: the FLOPs on non-zero blocks only
    params: tuple[tuple[str, Any], ...] = ()  # op-specific settings (activation, sparsity, block, ...)
    images: Optional[int] = None          # whole-model cases: images one call generates (for images/s)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self.shape)

    @property
    def shape_str(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.shape)

    @property
    def id(self) -> str:
        return "-".join(f"{k}{v}" for k, v in self.shape) + f"-{dtype_name(self.dtype)}"

    def param(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)


@dataclass(frozen=True)
class Provider:
    """One way to compute a suite's op.

    ``build(case, inputs)`` returns the zero-argument callable that is timed (whatever
    set-up it needs, e.g. compilation, happens there and is timed separately as
    ``setup_s``). ``skip_reason(case)`` is "" when the provider can run the case, and
    otherwise says why not; such a provider is listed as skipped, never dropped.
    """

    name: str
    kind: str                                           # "eager", "peer" or "fastgan"
    build: Callable[[Case, Any], Callable[[], Any]]
    skip_reason: Callable[[Case], str] = lambda case: ""
    default: bool = True                                # part of the default suite run
    description: str = ""


@dataclass
class Suite:
    """One op's benchmark."""

    op: str
    description: str
    shape_names: tuple[str, ...]
    make_case: Callable[[dict, torch.dtype, str], Case]
    default_cases: Callable[[str, bool], list[Case]]    # (device type, quick) -> cases
    make_inputs: Callable[[Case], Any]
    reference: Callable[[Case, Any], torch.Tensor]       # the op in float32 compute, output in the case's dtype
    providers: list[Provider]
    dtypes: dict[str, tuple] = field(default_factory=dict)  # device type -> default dtypes
    # (case, output, expected) -> (max abs err, max rel err, correct); None = testing.max_errors + FORWARD tolerances
    compare: Optional[Callable[[Case, torch.Tensor, torch.Tensor], tuple[float, float, bool]]] = None
    baseline: str = "eager"
    compile_peer: str = "torch.compile"
    notes: dict[str, str] = field(default_factory=dict)  # choices recorded in the report
    targets: dict[tuple[str, str], float] = field(default_factory=dict)  # (device, dtype) -> geomean target
    # The full grid (``--full``, and ``pytest benchmarks``): device type -> cases; None = the default cases.
    full_cases: Optional[Callable[[str], list[Case]]] = None
    # Providers among which the fastest of each case is "the peer" that every row is also compared with
    # (speedup_vs_peer), e.g. every torch int8 peer; ``peer_label`` names that comparison in reports.
    peer_group: tuple[str, ...] = ()
    peer_label: str = ""
    # The suite's own target lines: (its rows, its skipped providers) -> [summary.suite_check(...)].
    checks: Optional[Callable[[Sequence[Any], Sequence[Any]], list[dict]]] = None
    # Timing per case set, on top of the run's configuration unless the user set the timing himself:
    # {"default" | "quick" | "full": {TimingConfig field: value}}.
    timing: dict[str, dict[str, Any]] = field(default_factory=dict)

    def provider(self, name: str) -> Provider:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(f"{self.op} has no provider {name!r} (have {[p.name for p in self.providers]})")

    def select_providers(self, names: Optional[Sequence[str]] = None) -> list[Provider]:
        """The default providers, or those named (the baseline is always kept: speed-ups need it)."""
        if not names:
            return [p for p in self.providers if p.default]
        wanted = set(names) | {self.baseline}
        unknown = set(names) - {p.name for p in self.providers}
        if unknown:
            raise ValueError(f"{self.op}: unknown provider(s) {sorted(unknown)}; "
                             f"choose from {[p.name for p in self.providers]}")
        return [p for p in self.providers if p.name in wanted]

    def cases(self, device: str, mode: str = "default") -> list[Case]:
        """The case set ``mode`` ("quick", "default" or "full") on ``device``."""
        if mode not in CASE_SETS:
            raise ValueError(f"case set must be one of {CASE_SETS}, got {mode!r}")
        if mode == "full" and self.full_cases is not None:
            return self.full_cases(device)
        return self.default_cases(device, mode == "quick")

    def cases_from_shapes(self, shapes: Sequence[Sequence[int]], dtypes: Sequence[torch.dtype],
                          device: str) -> list[Case]:
        cases = []
        for dims in shapes:
            if len(dims) != len(self.shape_names):
                raise ValueError(f"{self.op} shapes have {len(self.shape_names)} sizes "
                                 f"({'x'.join(self.shape_names)}), got {dims}")
            for dtype in dtypes:
                cases.append(self.make_case(dict(zip(self.shape_names, dims)), dtype, device))
        return cases


def _suite_modules() -> tuple[str, ...]:
    from .suites import SUITE_MODULES

    return SUITE_MODULES


def suite_names() -> list[str]:
    return list(_suite_modules())


# Whole-system suites: not op timings but a module with ``main(args) -> exit code`` that runs and
# reports itself (``fastgan-kernels bench --suite NAME``), e.g. the HTTP service under load.
SYSTEM_SUITES = {"serve": "fastgan_kernels.bench.suites.serve"}


def run_system_suite(name: str, args) -> int:
    if name not in SYSTEM_SUITES:
        raise ValueError(f"no system suite {name!r}; have {sorted(SYSTEM_SUITES)}")
    return importlib.import_module(SYSTEM_SUITES[name]).main(args)


def get_suite(op: str) -> Suite:
    if op not in _suite_modules():
        raise ValueError(f"no benchmark suite for op {op!r}; have {list(_suite_modules())}")
    return importlib.import_module(f"fastgan_kernels.bench.suites.{op}").SUITE

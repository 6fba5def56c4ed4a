"""The benchmark report: rows, skipped providers, settings, machine; JSON in and out.

Rendering (console table, Markdown) lives in ``render.py``; the summary maths in
``summary.py``. A report read back from JSON renders exactly like the one that wrote it
(the summary is recomputed from the rows, never trusted from the file).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from . import summary as summary_mod

SCHEMA = "fastgan-bench/1"


@dataclass
class Row:
    """One provider on one case: the measured figures, or the error that stopped it."""

    op: str
    case: str
    shape: dict
    dtype: str
    device: str
    provider: str
    kind: str
    status: str = "ok"                   # "ok" or "error"
    timing_mode: str = ""
    median_s: Optional[float] = None
    p20_s: Optional[float] = None
    p80_s: Optional[float] = None
    calls: int = 0
    samples: int = 0
    flops: float = 0.0
    bytes: float = 0.0
    nonzero_flops: Optional[float] = None
    tflops: Optional[float] = None        # dense-equivalent
    nonzero_tflops: Optional[float] = None
    gbps: Optional[float] = None
    speedup_vs_eager: Optional[float] = None
    speedup_vs_compile: Optional[float] = None
    max_abs_err: Optional[float] = None
    max_rel_err: Optional[float] = None
    correct: Optional[bool] = None
    setup_s: Optional[float] = None       # build time (compilation) outside the timing
    error: str = ""
    images: Optional[int] = None          # whole-model rows: images per call
    images_per_s: Optional[float] = None
    sqnr_db: Optional[float] = None       # suites that judge by signal-to-noise (int8, whole models)
    psnr_db: Optional[float] = None
    peer: Optional[str] = None            # the suite's strongest peer in this case (Suite.peer_group)
    speedup_vs_peer: Optional[float] = None
    first_call_s: Optional[float] = None  # the checked call (it includes any one-time cost)

    def set_timing(self, median: float, p20: float, p80: float, calls: int, samples: int, mode: str) -> None:
        self.median_s, self.p20_s, self.p80_s = median, p20, p80
        self.calls, self.samples, self.timing_mode = calls, samples, mode
        self.tflops = self.flops / median / 1e12 if median > 0 else None
        self.gbps = self.bytes / median / 1e9 if median > 0 else None
        if self.nonzero_flops is not None and median > 0:
            self.nonzero_tflops = self.nonzero_flops / median / 1e12
        if self.images and median > 0:
            self.images_per_s = self.images / median


@dataclass
class Skipped:
    """A provider that could not run some cases of an op here, and why."""

    op: str
    provider: str
    device: str
    reason: str
    cases: int = 0
    dtypes: list = field(default_factory=list)


@dataclass
class Report:
    machine: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    suites: dict = field(default_factory=dict)     # op -> {"description", "notes", "targets"}
    rows: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    created: str = ""
    command: str = ""
    duration_s: Optional[float] = None

    # --------------------------------------------------------------- derived figures
    def summary(self) -> list[dict]:
        return summary_mod.summarize(self.rows)

    def target_checks(self) -> list[dict]:
        """The geomean-vs-eager targets of every suite, then each suite's own checks (Suite.checks)."""
        targets = {op: info.get("targets", {}) for op, info in self.suites.items()}
        return summary_mod.target_checks(self.summary(), targets) + self.suite_checks()

    def suite_checks(self) -> list[dict]:
        from .registry import get_suite

        checks = []
        for op in self.suites:
            try:
                suite = get_suite(op)
            except ValueError:  # a report from a version that had a suite this one lacks
                continue
            rows = [r for r in self.rows if r.op == op]
            if suite.checks is not None and rows:
                checks += suite.checks(rows, [s for s in self.skipped if s.op == op])
        return checks

    def failures(self) -> list[Row]:
        """Rows that errored, and our kernels or the eager baseline giving a wrong answer.

        A peer's inaccuracy is the peer's own (oneDNN's int8 without AVX512-VNNI quantises with a
        reduced range: ~20 dB SQNR): it is reported (:meth:`inaccurate_peers`), not a failure."""
        return [r for r in self.rows if r.status != "ok" or (r.correct is False and r.kind != "peer")]

    def inaccurate_peers(self) -> list[Row]:
        """Peer rows that ran but missed the suite's accuracy bar."""
        return [r for r in self.rows if r.status == "ok" and r.correct is False and r.kind == "peer"]

    def add_skip(self, op: str, provider: str, device: str, reason: str, dtype: str) -> None:
        for s in self.skipped:
            if (s.op, s.provider, s.device, s.reason) == (op, provider, device, reason):
                s.cases += 1
                if dtype not in s.dtypes:
                    s.dtypes.append(dtype)
                return
        self.skipped.append(Skipped(op, provider, device, reason, 1, [dtype]))

    # --------------------------------------------------------------- JSON
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "command": self.command,
            "duration_s": self.duration_s,
            "machine": self.machine,
            "settings": self.settings,
            "suites": self.suites,
            "rows": [_encode_row(r) for r in self.rows],
            "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "summary": self.summary(),
            "targets": self.target_checks(),
        }

    def to_json(self, path: Optional[str] = None) -> str:
        text = json.dumps(_jsonable(self.to_dict()), indent=2, sort_keys=False)
        if path:
            with open(path, "w") as f:
                f.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a fastgan benchmark report (schema {data.get('schema')!r}, expected {SCHEMA!r})")
        row_fields = {f.name for f in dataclasses.fields(Row)}
        skip_fields = {f.name for f in dataclasses.fields(Skipped)}
        return cls(
            machine=data.get("machine", {}),
            settings=data.get("settings", {}),
            suites=data.get("suites", {}),
            rows=[Row(**{k: _decode(k, v) for k, v in r.items() if k in row_fields}) for r in data.get("rows", [])],
            skipped=[Skipped(**{k: v for k, v in s.items() if k in skip_fields}) for s in data.get("skipped", [])],
            created=data.get("created", ""),
            command=data.get("command", ""),
            duration_s=data.get("duration_s"),
        )

    @classmethod
    def from_json(cls, path: str) -> "Report":
        with open(path) as f:
            return cls.from_dict(json.load(f))


# Decibel figures are infinite for an exact match; JSON has no infinity, so they travel as "inf".
_DB_FIELDS = ("sqnr_db", "psnr_db")


def _encode_row(row: Row) -> dict:
    d = dataclasses.asdict(row)
    for key in _DB_FIELDS:
        if d.get(key) == float("inf"):
            d[key] = "inf"
    return d


def _decode(key: str, value: Any) -> Any:
    return float("inf") if key in _DB_FIELDS and value == "inf" else value


def _jsonable(obj: Any) -> Any:
    """Plain JSON types only (NaN/inf become None: JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)

"""Per-op summaries: geometric-mean speed-up and KernelBench's fast_p.

fast_p (KernelBench): the share of rows whose output is correct *and* whose speed-up
over eager is strictly greater than p. The denominator is every row the provider
attempted (a row that errored counts as incorrect); rows of a skipped provider are
not rows at all. fast_0 would be the plain correctness rate; p = 1.0 is "correct and
faster than eager".
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Iterable, Optional, Sequence

FAST_P = (1.0, 1.5, 2.0)
ALL = "all"


def geomean(values: Iterable[float]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if any(v <= 0 or math.isnan(v) for v in vals):
        raise ValueError(f"geomean needs positive values, got {vals}")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def fast_p(correct: Sequence[bool], speedups: Sequence[Optional[float]], p: float) -> Optional[float]:
    """Share of rows that are correct and faster than the baseline by more than ``p``."""
    if len(correct) != len(speedups):
        raise ValueError("correct and speedups differ in length")
    if not correct:
        return None
    hits = sum(1 for ok, s in zip(correct, speedups) if ok and s is not None and s > p)
    return hits / len(correct)


def fast_p_key(p: float) -> str:
    return f"fast_{p:g}"


def _is_correct(row) -> bool:
    return row.status == "ok" and bool(row.correct)


def summarize(rows: Sequence) -> list[dict]:
    """One entry per (op, device, provider, dtype) and per (op, device, provider) over all dtypes."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for row in rows:
        for dtype in (row.dtype, ALL):
            groups.setdefault((row.op, row.device, row.provider, dtype), []).append(row)
    out = []
    for (op, device, provider, dtype), members in groups.items():
        correct = [_is_correct(r) for r in members]
        speedups = [r.speedup_vs_eager for r in members]
        good = [r for r in members if _is_correct(r)]
        entry = {
            "op": op, "device": device, "provider": provider, "kind": members[0].kind, "dtype": dtype,
            "rows": len(members), "correct": sum(correct),
            "errors": sum(1 for r in members if r.status != "ok"),
            "geomean_vs_eager": geomean(r.speedup_vs_eager for r in good),
            "geomean_vs_compile": geomean(r.speedup_vs_compile for r in good),
            "geomean_tflops": geomean(r.tflops for r in good if r.tflops),
            "geomean_vs_peer": geomean(getattr(r, "speedup_vs_peer", None) for r in good),
        }
        for p in FAST_P:
            entry[fast_p_key(p)] = fast_p(correct, speedups, p)
        out.append(entry)
    return out


def target_checks(summary: Sequence[dict], targets: dict) -> list[dict]:
    """Compare fastgan providers' geomean speed-ups over eager with the suite's targets.

    ``targets`` maps op -> {"device/dtype": minimum geomean}.
    """
    checks = []
    for op, per in targets.items():
        for key, target in per.items():
            device, dtype = key.split("/")
            entries = [e for e in summary if e["op"] == op and e["device"] == device and e["dtype"] == dtype]
            if not entries:
                continue  # this run did not include that device / dtype at all
            measured = [e for e in entries if e["kind"] == "fastgan" and e["geomean_vs_eager"] is not None]
            if not measured:
                checks.append({"op": op, "device": device, "dtype": dtype, "target": target, "provider": None,
                               "geomean_vs_eager": None, "met": None})
            for e in measured:
                checks.append({"op": op, "device": device, "dtype": dtype, "target": target,
                               "provider": e["provider"], "geomean_vs_eager": e["geomean_vs_eager"],
                               "met": e["geomean_vs_eager"] >= target})
    return checks


def suite_check(op: str, device: str, dtype: str, text: str, met: Optional[bool], *, name: str = "",
                provider: Optional[str] = None, measured: Optional[float] = None,
                target: Optional[float] = None) -> dict:
    """One line of a suite's own checks (Suite.checks): ``text`` is printed as it is.

    ``met`` is True / False for a target, None for a target that could not be measured, and
    the string "info" for a figure that is reported without a target (e.g. a break-even point).
    """
    return {"op": op, "device": device, "dtype": dtype, "name": name, "provider": provider, "target": target,
            "measured": measured, "met": met, "text": text}


def verdict(met) -> str:
    return {True: "met", False: "NOT met", None: "NOT MEASURED"}.get(met, "")

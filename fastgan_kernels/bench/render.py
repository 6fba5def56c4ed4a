"""Reports as text: the console table and Markdown (docs/benchmarks.md is written by this, never by hand)."""
from __future__ import annotations

from typing import Optional, Sequence

from . import machine as machine_mod
from .registry import SHORT_DTYPE
from .report import Report
from .summary import FAST_P, fast_p_key


def fmt_time(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}" if unit != "s" else f"{seconds:.3g} s"
    return f"{seconds * 1e9:.3g} ns"


def _num(v: Optional[float], spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def _x(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.0%}"


def _dt(name: str) -> str:
    return SHORT_DTYPE.get(name, name)


def row_cells(r) -> list[str]:
    if r.status != "ok":
        return [r.op, " ".join(f"{k}={v}" for k, v in r.shape.items()), _dt(r.dtype), r.provider,
                "error", "", "", "", "", "", "", "", r.error]
    spread = f"{fmt_time(r.p20_s)} - {fmt_time(r.p80_s)}"
    ok = "yes" if r.correct else "NO"
    tf = _num(r.tflops, ".3f") + (f" ({_num(r.nonzero_tflops, '.3f')} nz)" if r.nonzero_tflops is not None else "")
    return [r.op, " ".join(f"{k}={v}" for k, v in r.shape.items()), _dt(r.dtype), r.provider,
            fmt_time(r.median_s), spread, f"{r.samples}x{r.calls // max(r.samples, 1)}", tf, _num(r.gbps, ".1f"), _x(r.speedup_vs_eager),
            _x(r.speedup_vs_compile), f"{_num(r.max_abs_err, '.2e')} / {_num(r.max_rel_err, '.2e')}", ok]


# Columns shown only when some row of the table has the figure (int8, block-sparse, whole models).
EXTRA_COLUMNS = (("speedup_vs_peer", "vs peer"), ("images_per_s", "images/s"), ("sqnr_db", "SQNR dB"),
                 ("psnr_db", "PSNR dB"))


def extra_keys(rows) -> list[str]:
    return [key for key, _ in EXTRA_COLUMNS if any(getattr(r, key, None) is not None for r in rows)]


def extra_header(keys: Sequence[str], peer_label: str = "") -> list[str]:
    names = dict(EXTRA_COLUMNS)
    return [f"vs {peer_label}" if key == "speedup_vs_peer" and peer_label else names[key] for key in keys]


def _db(v: Optional[float]) -> str:
    if v is None:
        return "-"
    return "inf" if v == float("inf") else f"{v:.1f}"


def extra_cells(r, keys: Sequence[str], peer_names: bool = True) -> list[str]:
    """The extra columns' cells; ``peer_names``: name the peer (when a suite picks among several)."""
    cells = []
    for key in keys:
        v = getattr(r, key, None)
        if key == "speedup_vs_peer":
            cells.append("-" if v is None else f"{v:.2f}x" + (f" ({r.peer})" if peer_names else ""))
        elif key == "images_per_s":
            cells.append(_num(v, ",.0f"))
        else:
            cells.append(_db(v) if r.status == "ok" else "")
    return cells


ROW_HEADER = ["op", "shape", "dtype", "provider", "median", "p20 - p80", "samples", "TFLOP/s", "GB/s", "vs eager",
              "vs compile", "max abs / rel err", "correct"]
SUMMARY_HEADER = ["op", "device", "dtype", "provider", "rows", "correct", "geomean vs eager", "geomean vs compile",
                  *[f"fast_{p:g}" for p in FAST_P]]


def summary_cells(e: dict, with_peer: bool = False) -> list[str]:
    peer = [_x(e.get("geomean_vs_peer"))] if with_peer else []
    return [e["op"], e["device"], _dt(e["dtype"]), e["provider"], str(e["rows"]), str(e["correct"]),
            _x(e["geomean_vs_eager"]), _x(e["geomean_vs_compile"]), *peer, *[_pct(e[fast_p_key(p)]) for p in FAST_P]]


def summary_table(entries: Sequence[dict], table) -> str:
    """The summary; a "geomean vs peer" column appears when some suite compares with a peer group."""
    with_peer = any(e.get("geomean_vs_peer") is not None for e in entries)
    header = SUMMARY_HEADER[:8] + (["geomean vs peer"] if with_peer else []) + SUMMARY_HEADER[8:]
    return table(header, [summary_cells(e, with_peer) for e in entries])


def _peer_names(report: Report, op: str) -> bool:
    return len(report.suites.get(op, {}).get("peer_group", ())) > 1


def rows_table(report: Report) -> str:
    """Every row (the console table), with the extra columns some rows have."""
    keys = extra_keys(report.rows)
    return _table(ROW_HEADER + extra_header(keys),
                  [row_cells(r) + extra_cells(r, keys, _peer_names(report, r.op)) for r in report.rows])


def target_lines(report: Report) -> list[str]:
    lines = []
    for c in report.target_checks():
        if c.get("text"):  # a suite's own check, worded by the suite
            lines.append(c["text"])
            continue
        head = f"target {c['op']} {c['device']} {_dt(c['dtype'])}: fastgan >= {c['target']:.2f}x eager (geomean)"
        if c["met"] is None:
            reasons = sorted({s.reason for s in report.skipped if s.op == c["op"] and s.device == c["device"]
                              and s.provider.startswith("fastgan:")})
            lines.append(f"{head}: NOT MEASURED, no fastgan backend ran"
                         + (f" ({'; '.join(reasons)})" if reasons else ""))
        else:
            verdict = "met" if c["met"] else "NOT met"
            lines.append(f"{head}: {c['provider']} {c['geomean_vs_eager']:.3f}x, {verdict}")
    return lines


BUSY_WARN_PCT = 25.0


def busy_warning(report: Report) -> str:
    """A warning when other processes kept the CPU busy around the run ("" otherwise)."""
    s = report.settings
    if s.get("device") != "cpu":
        return ""
    busy = [v for v in (s.get("cpu_busy_before_pct"), s.get("cpu_busy_after_pct")) if v is not None]
    during = s.get("others_busy_during_pct")
    if during is not None and during >= BUSY_WARN_PCT / 2 and (not busy or max(busy) < BUSY_WARN_PCT):
        return (f"WARNING: other processes took {during:.0f}% of the CPUs while this run was timing (quiet "
                "before and after); multi-threaded providers suffer most from such contention, so these figures "
                "are not reliable. Re-run on a quiet machine.")
    if not busy or max(busy) < BUSY_WARN_PCT:
        return ""
    return (f"WARNING: other processes kept the CPUs {max(busy):.0f}% busy around this run (load average "
            f"{s.get('loadavg_start')} -> {s.get('loadavg_end')}); multi-threaded providers suffer most from "
            "such contention, so these figures are not reliable. Re-run on a quiet machine.")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines = [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def to_text(report: Report) -> str:
    s = report.settings
    parts = [f"fastgan-kernels bench: {s.get('device')} | timing {s.get('timing_mode')} | "
             f"{machine_mod.one_line(report.machine)}",
             f"allocator: {s.get('allocator', {}).get('summary', '-')}", ""]
    if busy_warning(report):
        parts += [busy_warning(report), ""]
    if report.rows:
        parts += [rows_table(report), ""]
    if report.skipped:
        parts += ["skipped:"] + [f"  {k.op} {k.provider} on {k.device} ({k.cases} cases): {k.reason}"
                                 for k in report.skipped] + [""]
    parts += ["summary (geomeans over correct rows; fast_p = share of rows correct and > p x eager):",
              summary_table(report.summary(), _table)]
    parts += target_lines(report)
    if report.duration_s is not None:
        per_suite = ", ".join(f"{op} {info['duration_s']:.0f} s" for op, info in report.suites.items()
                              if info.get("duration_s") is not None)
        parts.append(f"ran in {report.duration_s:.0f} s" + (f" ({per_suite})" if per_suite else ""))
    return "\n".join(parts)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def to_markdown(report: Report) -> str:
    s, m = report.settings, report.machine
    cpu, gpu, v = m.get("cpu", {}), m.get("gpu", {}), m.get("versions", {})
    timing = s.get("timing", {})
    out = ["# Benchmarks", "",
           "<!-- Written by `fastgan-kernels bench --markdown docs/benchmarks.md` (make bench); "
           "do not edit by hand. -->", "",
           f"Generated {report.created} by `{report.command}`"
           + (f" in {report.duration_s:.0f} s." if report.duration_s is not None else "."), "",
           "## Machine and settings", "",
           f"- CPU: {cpu.get('model')}, {cpu.get('logical_cpus')} logical CPUs, "
           f"{m.get('torch_threads')} torch threads; ISA: {' '.join(cpu.get('isa_flags', [])) or '-'}",
           f"- fastgan extension: {cpu.get('fastgan_extension', '-')}"
           + (f" (CPU path {cpu['fastgan_isa']})" if cpu.get("fastgan_isa") else ""),
           "- GPU: " + (f"{gpu.get('name')}, {gpu.get('memory_gib')} GiB, driver {gpu.get('driver')}, "
                        f"CUDA {gpu.get('cuda_runtime')}" if gpu.get("available") else f"none ({gpu.get('reason')})"),
           "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items())
           + (f"; source {m['source']}" if m.get("source") else ""),
           f"- Device benchmarked: {s.get('device')}; timing: `{s.get('timing_mode')}` "
           f"(min run time {timing.get('min_run_time')} s, >= {timing.get('min_blocks')} blocks per provider "
           f"on CPU, at most {timing.get('max_run_time')} s, and a call longer than that timed once, by its "
           f"checked call; warm-up {timing.get('warmup_ms')} ms / {timing.get('rep_ms')} ms of calls on GPU); "
           f"quick: {s.get('quick')}" + (f"; case set: {s['case_set']}" if s.get("case_set") else ""),
           f"- Allocator (same for every provider): {s.get('allocator', {}).get('summary', '-')}",
           f"- Load average at start / end: {s.get('loadavg_start')} / {s.get('loadavg_end')}; CPU busy with "
           f"other work just before / after: {s.get('cpu_busy_before_pct')}% / {s.get('cpu_busy_after_pct')}%"
           + (f", during: {s['others_busy_during_pct']}%" if s.get("others_busy_during_pct") is not None else "")
           + " "
           "(the machine is shared: figures are +-15% at best)", ""]
    if busy_warning(report):
        out += [f"> **{busy_warning(report)}**", ""]
    for op, info in report.suites.items():
        took = f" ({info['duration_s']:.0f} s" if info.get("duration_s") is not None else ""
        if took and info.get("others_busy_pct") is not None:
            took += f"; other processes took {info['others_busy_pct']:.0f}% of the CPUs meanwhile"
        took += ")" if took else ""
        out += [f"- `{op}`{took}: {info.get('description')}"]
        out += [f"  - {k}: {val}" for k, val in info.get("notes", {}).items()]
        if info.get("timing"):
            t = info["timing"]
            out += [f"  - timing: min run time {t.get('min_run_time')} s, >= {t.get('min_blocks')} blocks, "
                    f"at most {t.get('max_run_time')} s per provider (this suite's setting for its case set)"]
    out += ["", "Case sets: `fastgan-kernels bench` times each suite's default set (representative shapes; "
            "`make bench`), `--quick` a short one, `--full` the full grid (every sparsity x block x shape, every "
            "int8 layer and generator); `pytest benchmarks --benchmark-only` runs the full grid through "
            "pytest-benchmark (`--fastgan-cases default|quick` for the others)."]
    out += ["", "## Summary", "",
            "Geometric means over correct rows; fast_p is the share of rows that are correct and more than "
            "p times faster than eager (KernelBench).", "",
            summary_table(report.summary(), _md_table), ""]
    out += [f"- {line}" for line in target_lines(report)] + [""]
    if report.skipped:
        out += ["## Skipped providers", "",
                _md_table(["op", "provider", "device", "cases", "dtypes", "reason"],
                          [[k.op, k.provider, k.device, str(k.cases), ", ".join(_dt(d) for d in k.dtypes), k.reason]
                           for k in report.skipped]), ""]
    out += ["## Results", ""]
    groups: dict = {}
    for r in report.rows:
        groups.setdefault((r.op, r.device, r.dtype), []).append(r)
    for (op, device, dtype), rows in groups.items():
        label = report.suites.get(op, {}).get("peer_label", "")
        out += [f"### {op}, {device}, {_dt(dtype)}", "", _md_rows(rows, label, _peer_names(report, op)), ""]
    return "\n".join(out)


def _md_rows(rows, peer_label: str, peer_names: bool) -> str:
    """shape, provider, ... (no op or dtype column: the section names them), extra columns, setup."""
    keys = extra_keys(rows)
    header = ROW_HEADER[1:2] + ROW_HEADER[3:] + extra_header(keys, peer_label) + ["setup"]
    body = [row_cells(r)[1:2] + row_cells(r)[3:] + extra_cells(r, keys, peer_names) + [fmt_time(r.setup_s)]
            for r in rows]
    return _md_table(header, body)


def write_markdown(report: Report, path: str) -> None:
    with open(path, "w") as f:
        f.write(to_markdown(report))

"""Summaries and the markdown of docs/gpu_resources.md from a compiled sweep."""
from __future__ import annotations

import collections
from typing import Iterable

from ..triton import _resources
from .compile import ARCH_NAMES
from .sweep import Variant


def is_16bit_or_int8(v: Variant) -> bool:
    """The variant's dot runs on tensor cores (fp16/bf16/int8 operands): no spill or misfit is tolerated."""
    return not v.launch.kwargs.get("F32_DOT", False)


def fits(v: Variant) -> bool:
    return v.result.get("shared", 0) <= _resources.SMEM_PER_BLOCK[v.arch]


def spills(v: Variant) -> bool:
    return v.result.get("spill_stores", 0) + v.result.get("spill_loads", 0) > 0


# Archs whose problems fail --check. sm_100 is compiled and reported, not gated: with Triton 3.9 its
# tcgen05 kernels spill 4-12 B at 64-96 registers (no call, no register cap: ptxas's allocation around
# the fixed register ranges of tcgen05.ld/st), which no tile rule predicts; docs/gpu_resources_history.md.
GATED_ARCHS = (80, 90)


def problems(vs: Iterable[Variant], kept_only: bool = True) -> list[str]:
    """One line per variant the autotuner may pick that fails to compile, does not fit, or spills.

    fp32 variants (exact FMA dots) are held to the same rule: the config lists keep only spill-free
    fp32 tiles (docs/gpu_resources.md)."""
    out = []
    for v in vs:
        if kept_only and not v.kept:
            continue
        where = f"{v.kernel} [{v.launch.label}] {v.config_name} on {ARCH_NAMES[v.arch]}"
        r = v.result
        if "error" in r:
            out.append(f"{where}: does not compile: {r['error']}")
            continue
        if not fits(v):
            out.append(f"{where}: needs {r['shared']:,} B of shared memory, the SM has "
                       f"{_resources.SMEM_PER_BLOCK[v.arch]:,} B")
        if spills(v):
            out.append(f"{where}: spills {r['spill_stores']} B stores / {r['spill_loads']} B loads "
                       f"({r['regs']} registers)")
    return out


def counts(vs: Iterable[Variant]) -> dict:
    """Per arch: variants, compile errors, misfits and spills over all configs and over kept configs."""
    c = collections.defaultdict(collections.Counter)
    for v in vs:
        a = ARCH_NAMES[v.arch]
        ok = "error" not in v.result
        c[a]["variants"] += 1
        c[a]["kept"] += v.kept
        c[a]["errors"] += not ok
        for scope, on in (("all", True), ("kept", v.kept)):
            if on and ok:
                c[a][f"no fit ({scope})"] += not fits(v)
                c[a][f"spill ({scope})"] += spills(v)
                c[a][f"spill 16-bit/int8 ({scope})"] += spills(v) and is_16bit_or_int8(v)
        wide = _resources.WIDE_ACC_ARCHS.get(v.arch)
        if wide and ok and v.kept and is_16bit_or_int8(v) and v.result.get("mma_kind") != "n/a":
            c[a]["kept 16-bit/int8 GEMMs"] += 1
            c[a][f"... using {wide}"] += bool(v.result.get(wide))
    return {a: dict(c[a]) for a in sorted(c)}


def summary_text(vs: list[Variant], wall: float) -> str:
    lines = [f"{len(vs)} variants compiled in {wall:.0f} s "
             f"({sum(1 for v in vs if v.result.get('cached'))} from the cache)"]
    for arch, cnt in counts(vs).items():
        lines.append(f"  {arch}: " + ", ".join(f"{k} {n}" for k, n in cnt.items()))
    return "\n".join(lines)


def _cell(v: Variant) -> str:
    r = v.result
    if "error" in r:
        return "error"
    spill = f"{r['spill_stores']}/{r['spill_loads']}" if spills(v) else "0"
    mark = "" if fits(v) else " **no fit**"
    return f"{r['regs']} | {spill} | {r['shared']:,}{mark}"


def markdown(vs: list[Variant], wall: float, command: str) -> str:
    archs = sorted({v.arch for v in vs})
    out = ["# GPU resources of the Triton kernels (ahead-of-time compile, no GPU)", "",
           f"Written by `{command}` ({len(vs)} variants, {wall:.0f} s wall on this machine with the cache "
           "state of that run). Every `@triton.jit` kernel of `fastgan_kernels/triton/`, every GPU autotune "
           "config, every launch variant its module declares in `aot_launches()`, compiled with "
           "`triton.compile(ASTSource(...), target=GPUTarget(\"cuda\", arch, 32))` down to a cubin by "
           "Triton's bundled ptxas. regs / spills (store/load bytes) from the ptxas `-v` log; smem = the "
           "dynamic shared memory the launch requests (bytes). *kept* = the module's pruning leaves the "
           "config in on that arch, so the autotuner may time it; pruned configs are listed for the record.",
           "", "Shared memory per block: " + ", ".join(
               f"{ARCH_NAMES[a]} {_resources.SMEM_PER_BLOCK[a]:,} B" for a in archs) + ".", "",
           "What the pruning, config and CUDA changes did (before / after counts, and what each cost): "
           "docs/gpu_resources_history.md.", "",
           "## Summary", ""]
    per_arch = counts(vs)
    keys = list(dict.fromkeys(k for cnt in per_arch.values() for k in cnt))  # sm_90 / sm_100 add MMA columns
    out += ["| arch | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for arch, cnt in per_arch.items():
        out.append(f"| {arch} | " + " | ".join(str(cnt.get(k, "-")) for k in keys) + " |")
    gated = [v for v in vs if v.arch in GATED_ARCHS]
    others = [v for v in vs if v.arch not in GATED_ARCHS]
    out += ["", f"Kept configs with a problem on the gated archs ({', '.join(ARCH_NAMES[a] for a in GATED_ARCHS)}; "
            "`--check` fails on any): " + (", ".join(problems(gated)) or "none") + "."]
    if others:
        reported = problems(others)
        out += ["", "Reported, not gated (" + ", ".join(sorted({ARCH_NAMES[v.arch] for v in others})) + f"): "
                f"{len(reported)} kept config(s)" + (":" if reported else ".")]
        out += [f"- {line}" for line in reported]
    by_kernel = collections.defaultdict(lambda: collections.defaultdict(dict))
    for v in vs:
        by_kernel[v.kernel][(v.launch.label, v.config_name)][v.arch] = v
    wide = [a for a in archs if a in _resources.WIDE_ACC_ARCHS]  # one "uses wgmma / tcgen05" column each
    for kernel, rows in by_kernel.items():
        out += ["", f"## {kernel}", "",
                "| launch | config | " + " | ".join(f"{ARCH_NAMES[a]} regs | spills | smem | kept" for a in archs)
                + "".join(f" | {ARCH_NAMES[a]} {_resources.WIDE_ACC_ARCHS[a]}" for a in wide) + " |",
                "| --- | --- |" + " --- | --- | --- | --- |" * len(archs) + " --- |" * len(wide)]
        for (label, cfg), per_arch in rows.items():
            cells = []
            for a in archs:
                v = per_arch.get(a)
                cells.append(f"{_cell(v)} | {'yes' if v.kept else 'pruned'}" if v else "- | - | - | -")
            for a in wide:
                h = per_arch.get(a)
                used = h and "error" not in h.result
                cells.append(("yes" if h.result.get(_resources.WIDE_ACC_ARCHS[a]) else "no") if used else "-")
            out.append(f"| {label} | {cfg} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"

"""Each benchmark row as a fraction of the GPU's peak: ``python -m fastgan_kernels.bench.peaks REPORT.json``.

A first GPU run should explain itself: 40 TFLOP/s means little until it reads "4% of the H200's
fp16 tensor-core peak, 61% of its HBM bandwidth" (so the row is bandwidth-bound, not slow).
The GPU is recognised by name in :data:`GPUS` (dense datasheet peaks, no 2:4 sparsity, boost
clocks); an unknown GPU prints the rows without fractions and says so.

Which peak a row is held to: fp32 rows against the **FP32 (FMA) peak**, because the kernels
compute exact fp32 (no TF32); fp16 / bf16 rows against the 16-bit tensor-core peak with fp32
accumulation; ``int8_linear`` rows against the int8 tensor-core peak. Block-sparse rows count the
FLOPs of the kept blocks (``nonzero_tflops``), which is the work actually done. Bandwidth is the
row's bytes (operands read once, output written once) over its median time, against HBM/GDDR.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

# name pattern (matched in order, case-insensitive, against torch.cuda.get_device_name()) ->
# dense peaks: TFLOP/s (int8: TOPS) and memory bandwidth in GB/s.
GPUS = (
    ("H200", dict(fp32=67.0, fp16=989.0, bf16=989.0, int8=1979.0, gbps=4800.0)),
    ("H100 PCIe", dict(fp32=51.0, fp16=756.0, bf16=756.0, int8=1513.0, gbps=2000.0)),
    ("H100", dict(fp32=67.0, fp16=989.0, bf16=989.0, int8=1979.0, gbps=3350.0)),
    ("B200", dict(fp32=80.0, fp16=2250.0, bf16=2250.0, int8=4500.0, gbps=8000.0)),
    ("A100 80GB PCIe", dict(fp32=19.5, fp16=312.0, bf16=312.0, int8=624.0, gbps=1935.0)),
    ("A100-SXM4-80GB", dict(fp32=19.5, fp16=312.0, bf16=312.0, int8=624.0, gbps=2039.0)),
    ("A100", dict(fp32=19.5, fp16=312.0, bf16=312.0, int8=624.0, gbps=1555.0)),
    ("L40S", dict(fp32=91.6, fp16=362.0, bf16=362.0, int8=733.0, gbps=864.0)),
    ("L4", dict(fp32=30.3, fp16=121.0, bf16=121.0, int8=242.0, gbps=300.0)),
    ("A10", dict(fp32=31.2, fp16=125.0, bf16=125.0, int8=250.0, gbps=600.0)),
    ("RTX 4090", dict(fp32=82.6, fp16=165.2, bf16=165.2, int8=660.6, gbps=1008.0)),
    ("RTX 3090", dict(fp32=35.6, fp16=71.0, bf16=71.0, int8=284.0, gbps=936.0)),
)


def peaks_for(name: Optional[str]) -> Optional[tuple[str, dict]]:
    """(matched pattern, peaks) of the GPU called ``name``, or None when it is not in the table."""
    if not name:
        return None
    for pattern, peaks in GPUS:
        if pattern.lower() in name.lower():
            return pattern, peaks
    return None


def row_peak_key(row: dict) -> str:
    if row["op"].startswith("int8"):
        return "int8"
    return row["dtype"] if row["dtype"] in ("fp16", "bf16", "float16", "bfloat16") else "fp32"


def fractions(row: dict, peaks: dict) -> tuple[Optional[float], Optional[float]]:
    """(share of the compute peak, share of the memory bandwidth) a row reached."""
    key = {"float16": "fp16", "bfloat16": "bf16"}.get(row_peak_key(row), row_peak_key(row))
    tflops = row.get("nonzero_tflops") or row.get("tflops")
    compute = tflops / peaks[key] if tflops else None
    bandwidth = row["gbps"] / peaks["gbps"] if row.get("gbps") else None
    return compute, bandwidth


def table(report: dict, gpu_name: Optional[str] = None) -> str:
    name = gpu_name or (report.get("machine", {}).get("gpu", {}) or {}).get("name")
    found = peaks_for(name)
    rows = [r for r in report.get("rows", []) if r.get("status") == "ok" and r.get("median_s")]
    head = (f"{name}: peaks of {found[0]} ({', '.join(f'{k} {v:g}' for k, v in found[1].items())}; "
            "TFLOP/s, int8 TOPS, GB/s)" if found else
            f"{name or 'no GPU named in the report'}: not in the peak table (fastgan_kernels/bench/peaks.py), "
            "no fractions")
    lines = [head, f"{'op':<22} {'case':<44} {'dtype':<9} {'provider':<26} {'TFLOP/s':>8} {'% peak':>7} "
                   f"{'GB/s':>8} {'% BW':>6}"]
    for r in rows:
        comp, bw = fractions(r, found[1]) if found else (None, None)
        tflops = r.get("nonzero_tflops") or r.get("tflops")
        lines.append(f"{r['op']:<22} {r['case'][:44]:<44} {r['dtype']:<9} {r['provider'][:26]:<26} "
                     f"{tflops or 0:>8.2f} {_pct(comp):>7} {r.get('gbps') or 0:>8.0f} {_pct(bw):>6}")
    return "\n".join(lines)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastgan_kernels.bench.peaks", description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="JSON reports of `fastgan-kernels bench --json`")
    p.add_argument("--gpu", help="GPU name to look up (default: the report's machine)")
    args = p.parse_args(argv)
    for path in args.reports:
        with open(path) as f:
            print(table(json.load(f), args.gpu))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The generator suite's target lines, its per-case table and the weight-read floor."""
from __future__ import annotations

import functools
import time
from typing import Optional, Sequence

import torch

from ...models import SEED_GENERATOR_LAYERS, WIDE_GENERATOR_LAYERS
from ..summary import suite_check, verdict
from . import _common

OP = "generator"
ORT_FP32, ORT_INT8 = "onnxruntime fp32", "onnxruntime int8"
CHAIN_FP32, CHAIN_BF16 = "fastgan:chain fp32", "fastgan:chain bf16"
CHAIN_STATIC, CHAIN_DYNAMIC, CHAIN_BSR = "fastgan:chain int8 static", "fastgan:chain int8 dynamic", \
    "fastgan:chain block-sparse 90%"
CHAIN_INT8 = (CHAIN_STATIC, CHAIN_DYNAMIC)
MIN_INT8_PSNR_DB = 35.0
# (model, batches (None: every batch measured), providers, peer, target): the targets on the CPU.
TARGETS = (
    ("seed", (1, 8), CHAIN_INT8, ORT_INT8, 2.0),
    ("seed", (64,), CHAIN_INT8, ORT_INT8, 1.3),
    ("seed", (1, 8, 64), (CHAIN_FP32,), ORT_FP32, 1.5),
    ("seed", (1,), (CHAIN_FP32,), "eager", 3.0),
    ("wide", None, CHAIN_INT8, ORT_INT8, 1.2),
    ("wide", None, (CHAIN_FP32,), ORT_FP32, 1.2),
)
LAYERS = {"seed": SEED_GENERATOR_LAYERS, "wide": WIDE_GENERATOR_LAYERS}
# Bytes per weight of each compiled format (block-sparse: the 10% of blocks kept, fp32).
FORMAT_BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "block-sparse 90%": 0.4}


def _l2_bytes() -> int:
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index2/size") as f:
            text = f.read().strip()
        return int(text[:-1]) * (1024 if text.endswith("K") else 1024 * 1024)
    except (OSError, ValueError):
        return 1 << 20


def _read_gbps(nbytes: int, trials: int = 7, seconds: float = 0.03) -> float:
    """The best of several short trials: the machine is shared, the best is closest to its capability."""
    buf = torch.ones(nbytes // 4)
    buf.sum()
    best = 0.0
    for _ in range(trials):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            buf.sum()
            reps += 1
        best = max(best, nbytes * reps / (time.perf_counter() - start) / 1e9)
    return best


@functools.lru_cache(maxsize=None)
def bandwidth() -> tuple[float, float, int]:
    """(L2 GB/s, DRAM GB/s, L2 bytes of all cores): measured once per process with torch.sum."""
    l2 = _l2_bytes()
    return _read_gbps(l2 // 2), _read_gbps(256 << 20), l2 * torch.get_num_threads()


def floor_us(model: str, fmt: str) -> tuple[float, float]:
    """(weight MB, floor in us) of ``model`` stored as ``fmt``."""
    l2_gbps, dram_gbps, l2_all = bandwidth()
    nbytes = FORMAT_BYTES[fmt] * sum(k * n for k, n in LAYERS[model])
    return nbytes / 1e6, nbytes / ((l2_gbps if nbytes <= l2_all else dram_gbps) * 1e9) * 1e6


def _fmt_of(provider: str) -> Optional[str]:
    for fmt in FORMAT_BYTES:
        if provider.endswith(fmt) or (fmt == "int8" and "int8" in provider):
            return fmt
    return None


def _median(rows, provider) -> Optional[float]:
    for r in rows:
        if r.provider == provider and r.status == "ok" and r.median_s:
            return r.median_s
    return None


def _floor_lines(device, dtype, models) -> list[dict]:
    l2_gbps, dram_gbps, l2_all = bandwidth()
    out = []
    for model in models:
        parts = [f"{fmt} {mb:.2f} MB {us:,.1f} us" for fmt in FORMAT_BYTES for mb, us in [floor_us(model, fmt)]]
        text = _common.head(OP, device, dtype, f"{model} G floor (weights once / read bandwidth: L2 "
                            f"{l2_gbps:.0f} GB/s up to {l2_all / 2**20:.1f} MiB, DRAM {dram_gbps:.0f} GB/s): "
                            + ", ".join(parts), False)
        out.append(suite_check(OP, device, dtype, text, "info", name="floor"))
    return out


def _case_lines(device, dtype, rows) -> list[dict]:
    out = []
    for case in dict.fromkeys(r.case for r in rows):
        mine = [r for r in rows if r.case == case and r.status == "ok" and r.median_s]
        if not mine:
            continue
        model, batch = mine[0].shape["model"], mine[0].shape["batch"]
        cells = []
        for r in mine:
            cell = f"{r.provider} {r.median_s * 1e6:,.1f} us"
            fmt = _fmt_of(r.provider)
            if fmt and r.provider.startswith("fastgan:chain"):
                cell += f" ({r.median_s * 1e6 / floor_us(model, fmt)[1]:.1f}x floor)"
            if r.provider != "eager":
                cell += f" {_common.db(r.psnr_db)} dB" + ("" if r.correct else " WRONG")
            cells.append(cell)
        text = f"{model} G batch {batch} (median, PSNR vs eager fp32): " + "; ".join(cells)
        out.append(suite_check(OP, device, dtype, _common.head(OP, device, dtype, text, False), "info", name="case"))
    return out


def _target_lines(device, dtype, rows, skipped) -> list[dict]:
    out = []
    for model, batches, providers, peer, target in TARGETS:
        cases = [r for r in rows if r.shape["model"] == model and (batches is None or r.shape["batch"] in batches)]
        measured_batches = sorted({r.shape["batch"] for r in cases})
        if not measured_batches:
            continue
        for p in providers:
            what = f"{model} G {p} >= {target:g}x {peer} at batch {', '.join(map(str, batches or measured_batches))}"
            ratios = []
            for b in measured_batches:
                case = [r for r in cases if r.shape["batch"] == b]
                mine, theirs = _median(case, p), _median(case, peer)
                correct = all(r.correct for r in case if r.provider == p)
                if mine and theirs:
                    ratios.append((b, theirs / mine, correct))
            if not ratios:
                why = sorted({s.reason for s in skipped if s.provider in (p, peer) and s.device == device})
                text = _common.head(OP, device, dtype, what) + ": NOT MEASURED" + (f" ({'; '.join(why)})" if why else "")
                out.append(suite_check(OP, device, dtype, text, None, name="vs_peer", provider=p, target=target))
                continue
            met = len(ratios) == len(measured_batches) and all(v >= target and ok for _, v, ok in ratios)
            figures = ", ".join(f"{v:.2f}x" + ("" if ok else " (WRONG)") for _, v, ok in ratios)
            out.append(suite_check(OP, device, dtype, _common.head(OP, device, dtype, what) + f": {figures}, "
                                   + verdict(met), met, name="vs_peer", provider=p, target=target,
                                   measured=min(v for _, v, _ in ratios)))
    psnrs = [r.psnr_db for r in rows if r.provider in CHAIN_INT8 and r.status == "ok" and r.psnr_db is not None]
    if psnrs:
        low = min(psnrs)
        met = low >= MIN_INT8_PSNR_DB
        text = _common.head(OP, device, dtype, f"compiled int8 PSNR >= {MIN_INT8_PSNR_DB:g} dB vs eager fp32") + \
            f": min {_common.db(low)} dB over {len(psnrs)} rows, {verdict(met)}"
        out.append(suite_check(OP, device, dtype, text, met, name="psnr", measured=low, target=MIN_INT8_PSNR_DB))
    return out


def checks(rows: Sequence, skipped: Sequence) -> list[dict]:
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        models = list(dict.fromkeys(r.shape["model"] for r in group))
        if device == "cpu":
            out += _target_lines(device, dtype, group, skipped)
            out += _floor_lines(device, dtype, models)
        out += _case_lines(device, dtype, group)
    return out

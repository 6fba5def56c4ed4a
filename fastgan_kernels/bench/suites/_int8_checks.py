"""The int8 suite's target lines (kept apart from the suite's providers for size)."""
from __future__ import annotations

from collections import Counter

from ..summary import geomean, suite_check, verdict
from . import _common

OP = "int8_linear"
BIG_SHAPES = ((64, 4096, 4096), (1024, 4096, 4096))
# The project's targets on the CPU in fp32.
TARGETS = {("cpu", "float32"): {"vs_eager_big": 12.0, "vs_peer_layers": 1.3, "vs_peer_models": 1.5,
                                "min_psnr_db": 35.0}}


def _shape(r) -> tuple:
    return (r.shape.get("M"), r.shape.get("K"), r.shape.get("N"))


def _big_line(device, dtype, layers, providers, target, skipped) -> list[dict]:
    what = f"fastgan >= {target:g}x eager fp32 on each 4096x4096 layer"
    big = [r for r in layers if _shape(r) in BIG_SHAPES]
    if not big:
        return []
    out = []
    for p in providers:
        rows = {_shape(r): r for r in _common.good(big, p) if r.speedup_vs_eager}
        if not rows:
            continue
        met = len(rows) == len({_shape(r) for r in big}) and all(r.speedup_vs_eager >= target for r in rows.values())
        figures = ", ".join(f"M={s[0]} {r.speedup_vs_eager:.2f}x" for s, r in sorted(rows.items()))
        out.append(suite_check(OP, device, dtype, _common.head(OP, device, dtype, what) + f": {p} {figures}, "
                               + verdict(met), met, name="vs_eager_big", provider=p, target=target,
                               measured=min(r.speedup_vs_eager for r in rows.values())))
    return out or [_common.not_measured(OP, device, dtype, what, skipped, "vs_eager_big")]


def _peer_line(device, dtype, rows, providers, target, skipped, what, name, min_psnr=None) -> list[dict]:
    out = []
    for p in providers:
        mine = [r for r in rows if r.provider == p and r.status == "ok" and r.speedup_vs_peer]
        good = [r for r in mine if r.correct]
        if not mine:
            continue
        g = geomean(r.speedup_vs_peer for r in good)
        peers = Counter(r.peer for r in mine)
        text = _common.head(OP, device, dtype, what, target is not None) + f": {p} "
        text += f"{g:.3f}x over {len(good)} of {len(mine)} rows" if g else f"no correct row of {len(mine)}"
        met = g is not None and len(good) == len(mine)
        if min_psnr is not None:
            low = min((r.psnr_db for r in mine if r.psnr_db is not None), default=None)
            text += f", PSNR >= {_common.db(low)} dB"
            met = met and low is not None and low >= min_psnr
        text += " (strongest peer: " + ", ".join(f"{k} in {v} row{'s' if v > 1 else ''}"
                                                  for k, v in peers.most_common()) + ")"
        if target is not None:
            met = met and g >= target
            text += f", {verdict(met)}"
        out.append(suite_check(OP, device, dtype, text, met if target is not None else "info", name=name,
                               provider=p, target=target, measured=g))
    if not out and target is not None and rows:
        out.append(_common.not_measured(OP, device, dtype, what, skipped, name))
    return out


def _model_info(device, dtype, models) -> list[dict]:
    out = []
    for case in dict.fromkeys(r.case for r in models):
        rows = [r for r in models if r.case == case and r.status == "ok" and r.images_per_s]
        if not rows:
            continue
        d = rows[0].shape
        parts = []
        for r in rows:
            cell = f"{r.provider} {r.images_per_s:,.0f}"
            if r.provider != "eager":
                cell += f" ({_common.db(r.psnr_db)} dB" + ("" if r.correct else ", WRONG") + ")"
            if r.kind == "fastgan" and r.speedup_vs_peer:
                cell += f" = {r.speedup_vs_peer:.2f}x {r.peer}"
            parts.append(cell)
        what = f"{d['model']} generator, batch {d['batch']} (images/s, PSNR vs fp32): " + "; ".join(parts)
        out.append(suite_check(OP, device, dtype, _common.head(OP, device, dtype, what, False), "info", name="model"))
    return out


def checks(rows, skipped) -> list[dict]:
    """>= 12x eager on the 4096x4096 layers, >= 1.3x the strongest torch int8 peer over the layers, whole
    generators >= 1.5x that peer at PSNR >= 35 dB (CPU, fp32), and a line per generator and batch."""
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        t = TARGETS.get((device, dtype), {})
        providers = _common.fastgan_providers(group)
        layers = [r for r in group if "M" in r.shape]
        models = [r for r in group if "model" in r.shape]
        if "vs_eager_big" in t:
            out += _big_line(device, dtype, layers, providers, t["vs_eager_big"], skipped)
        target = t.get("vs_peer_layers")
        what = (f"fastgan >= {target:g}x" if target else "fastgan vs") + \
            " the strongest torch int8 peer (geomean over the layer shapes)"
        out += _peer_line(device, dtype, layers, providers, target, skipped, what, "vs_peer_layers")
        target = t.get("vs_peer_models")
        what = ("whole generators: fastgan " + (f">= {target:g}x" if target else "vs")
                + " the strongest torch int8 peer" + (f" at PSNR >= {t['min_psnr_db']:g} dB" if target else "")
                + " (geomean over generators x batches)")
        out += _peer_line(device, dtype, models, providers, target, skipped, what, "vs_peer_models",
                          t.get("min_psnr_db", 0.0))
        out += _model_info(device, dtype, models)
    return out

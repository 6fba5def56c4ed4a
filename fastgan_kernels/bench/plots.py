"""PNG plots of a report (matplotlib, headless): speed-up per shape and provider; TFLOP/s against shape.

One pair of figures per (op, device, dtype). Only measured, correct rows are drawn;
a provider with no such row is absent from the plot and named in the report's
skipped table instead.
"""
from __future__ import annotations

import os

from .registry import SHORT_DTYPE
from .report import Report


def _shape_label(shape: dict) -> str:
    return "x".join(str(v) for v in shape.values())


def plot_report(report: Report, directory: str) -> list[str]:
    """Write the figures into ``directory``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    os.makedirs(directory, exist_ok=True)
    groups: dict = {}
    for r in report.rows:
        if r.status == "ok" and r.correct and r.median_s:
            groups.setdefault((r.op, r.device, r.dtype), []).append(r)
    written = []
    for (op, device, dtype), rows in groups.items():
        shapes = list(dict.fromkeys(_shape_label(r.shape) for r in sorted(rows, key=lambda r: r.flops)))
        providers = list(dict.fromkeys(r.provider for r in rows))
        by = {(r.provider, _shape_label(r.shape)): r for r in rows}
        title = f"{op} on {device}, {SHORT_DTYPE.get(dtype, dtype)}"
        stem = f"{op}_{device}_{SHORT_DTYPE.get(dtype, dtype)}"

        fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.25 * len(shapes) * max(1, len(providers)))), 4.5))
        width = 0.8 / max(1, len(providers))
        for i, p in enumerate(providers):
            xs = [j + i * width for j, s in enumerate(shapes) if (p, s) in by]
            ys = [by[(p, s)].speedup_vs_eager for s in shapes if (p, s) in by]
            xs = [x for x, y in zip(xs, ys) if y]
            ys = [y for y in ys if y]
            ax.bar(xs, [y - 1.0 for y in ys], width, bottom=1.0, label=p)  # up from 1x when faster, down when slower
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log", base=2)  # 0.5x and 2x lie equally far from 1x
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.set_xticks([j + width * (len(providers) - 1) / 2 for j in range(len(shapes))])
        ax.set_xticklabels(shapes, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("speed-up over eager (median)")
        ax.set_xlabel("shape (" + "x".join(rows[0].shape.keys()) + ")")
        ax.set_title(f"{title}: speed-up")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(directory, f"{stem}_speedup.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(7.0, 4.2))
        for p in providers:
            pts = sorted(((by[(p, s)].flops, by[(p, s)].tflops) for s in shapes if (p, s) in by))
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=p)
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs per call (dense-equivalent, log scale)")
        ax.set_ylabel("TFLOP/s")
        ax.set_title(f"{title}: throughput against shape")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(directory, f"{stem}_tflops.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

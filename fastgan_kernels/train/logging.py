"""Scalar logging to a CSV file and/or TensorBoard event files (rank 0 only).

The CSV is long-format (``step,tag,value,wall_time``), one row per scalar: new tags can
appear mid-run (e.g. the pruning sparsity) without rewriting a header, and a resumed run
appends to the same file. TensorBoard goes through ``torch.utils.tensorboard`` when the
``tensorboard`` package is installed (it is in the ``train`` extra); asking for it without
the package is an error that says so, rather than a silently missing log.
"""
from __future__ import annotations

import csv
import os
import time
from typing import Mapping


class ScalarLogger:
    """``log(step, {"loss_d": 0.7, ...})`` to every configured sink; a no-op with ``kind="none"``."""

    def __init__(self, out_dir: str, kind: str = "csv", enabled: bool = True):
        if kind not in ("csv", "tensorboard", "both", "none"):
            raise ValueError(f"log kind must be csv, tensorboard, both or none, got {kind!r}")
        self.out_dir, self.kind = out_dir, kind
        self.enabled = enabled and kind != "none"
        self._csv_file = self._csv = self._tb = None
        if not self.enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        if kind in ("csv", "both"):
            path = os.path.join(out_dir, "scalars.csv")
            fresh = not os.path.exists(path) or os.path.getsize(path) == 0
            self._csv_file = open(path, "a", newline="")
            self._csv = csv.writer(self._csv_file)
            if fresh:
                self._csv.writerow(["step", "tag", "value", "wall_time"])
        if kind in ("tensorboard", "both"):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError("log='tensorboard' needs the tensorboard package: "
                                  "pip install 'fastgan-kernels[train]' (or use log='csv')") from exc
            self._tb = SummaryWriter(log_dir=os.path.join(out_dir, "tb"))

    @property
    def csv_path(self) -> str:
        return os.path.join(self.out_dir, "scalars.csv")

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        now = time.time()
        for tag, value in scalars.items():
            value = float(value)
            if self._csv is not None:
                self._csv.writerow([step, tag, f"{value:.6g}", f"{now:.3f}"])
            if self._tb is not None:
                self._tb.add_scalar(tag, value, step, walltime=now)
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_csv(path: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from a scalars.csv (for tests and quick plots)."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return out

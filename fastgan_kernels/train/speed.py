"""Fused versus eager: the wall time of one whole training step, measured side by side.

A kernel benchmark times one op; what a user feels is the training step (forward and
backward of G and D, two Adam steps, data, Python). :func:`compare_step_time` builds two
trainers from the same config -- fused layers and plain ``nn.Linear`` -- and times them in
alternating blocks (fused, eager, fused, eager, ...), taking the median per-step time of
each, so that a slow patch of a shared machine lands on both rather than on one.
"""
from __future__ import annotations

import statistics
import tempfile
import time

import torch

from .config import TrainConfig
from .distributed import DistEnv, resolve_device


def compare_step_time(config: TrainConfig, steps: int = 10, blocks: int = 3, warmup: int = 3) -> dict:
    """{"fused_ms", "eager_ms", "speedup" (eager / fused), "device", "backend", "steps"} for ``config``."""
    from .trainer import Trainer

    device = resolve_device(config.device)
    env = DistEnv(device=device)
    with tempfile.TemporaryDirectory() as tmp:
        base = config.replace(log="none", progress=False, ckpt_every=0, quality=False, resume="", init_from="",
                              out_dir=tmp)
        trainers = {"fused": Trainer(base.replace(fused=True), env), "eager": Trainer(base.replace(fused=False), env)}
        for t in trainers.values():
            for _ in range(warmup):
                t.train_step()
        times: dict[str, list[float]] = {k: [] for k in trainers}
        for _ in range(blocks):
            for name, t in trainers.items():
                for _ in range(steps):
                    t0 = time.perf_counter()
                    t.train_step()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    times[name].append(time.perf_counter() - t0)
    fused, eager = statistics.median(times["fused"]), statistics.median(times["eager"])
    from ..backends import resolve

    backend = config.backend
    if backend == "auto":
        backend = resolve("auto", device, "fused_linear_fwd")
    return {"fused_ms": 1e3 * fused, "eager_ms": 1e3 * eager, "speedup": eager / fused, "device": str(device),
            "backend": backend, "steps": steps * blocks, "amp": config.amp}

"""Generator files for the tests and the load test, written exactly as ``train`` / ``convert`` write them.

Randomly initialised weights (serving does not care whether a generator was trained, and
training the wide one would take far longer than its load test), saved through the same
functions as the CLI: :func:`~fastgan_kernels.train.compress.compress_generator` +
``save_compressed`` for a ``convert`` output (int8 calibrated on latents, block pruning), or
a training-format checkpoint for the ``train`` side.
"""
from __future__ import annotations

from typing import Optional

import torch

# Architectures as TrainConfig fields: the seed and wide generators of fastgan_kernels.models.
SEED = {"latent_dim": 100, "g_hidden": (256, 512), "img_size": 28, "channels": 1}
WIDE = {"latent_dim": 128, "g_hidden": (1024, 2048, 4096), "img_size": 64, "channels": 3}
TINY = {"latent_dim": 16, "g_hidden": (32, 64), "img_size": 8, "channels": 1}
ARCHS = {"seed": SEED, "wide": WIDE, "tiny": TINY}


def _config(arch: str, conditional: bool, num_classes: int):
    from ..train.config import TrainConfig

    fields = dict(ARCHS[arch])
    return TrainConfig(**fields, conditional=conditional, num_classes=num_classes, d_hidden=(32, 16))


def write_compressed(path: str, arch: str = "seed", int8: bool = True, prune: float = 0.0, block=(16, 16),
                     conditional: bool = False, num_classes: int = 10, seed: int = 0,
                     calibration_batches: int = 2) -> dict:
    """A ``convert`` output of a randomly initialised generator; returns the compression info."""
    from ..train.build import plain_generator
    from ..train.compress import compress_generator, save_compressed

    cfg = _config(arch, conditional, num_classes)
    torch.manual_seed(seed)
    g = plain_generator(cfg.model_dict())
    out, info = compress_generator(g, cfg.model_dict(), prune, tuple(block), int8,
                                   calibration_batches=calibration_batches, seed=seed)
    save_compressed(path, out, cfg.model_dict(), info)
    return info


def write_training(path: str, arch: str = "tiny", conditional: bool = False, num_classes: int = 10, seed: int = 0,
                   step: int = 0, fused: bool = True) -> str:
    """A training-format checkpoint (generator and discriminator, as ``Trainer`` saves them) at ``step``."""
    from ..train.build import build_models, generator_builder
    from ..train.checkpoint import TRAIN_FORMAT, atomic_save

    cfg = _config(arch, conditional, num_classes).replace(fused=fused, seed=seed)
    torch.manual_seed(seed)
    g, d, _ = build_models(cfg.model_dict(), fused)
    # The model part of Trainer.state_dict() (a real run adds optimiser, scaler and pruner states).
    blob = {"format": TRAIN_FORMAT, "builder": generator_builder(cfg.model_dict()), "config": cfg.to_dict(),
            "step": step,
            "generator": g.state_dict(), "discriminator": d.state_dict()}
    return atomic_save(blob, path)


def offline_images_per_s(path: str, batch: int, seconds: float = 1.0, device: str = "cpu",
                         runner: str = "auto", threads: Optional[int] = None) -> Optional[float]:
    """The model's own throughput at ``batch`` (no HTTP, no queue): what the service is compared with."""
    from .model import BatchRunner, load

    before = torch.get_num_threads()
    try:
        run = BatchRunner(load(path, device, runner), threads=threads)
        return _throughput(run, batch, seconds)
    finally:
        torch.set_num_threads(before)


def _throughput(run, batch: int, seconds: float) -> float:
    import time

    m = run.model
    z = torch.randn(batch, m.latent_dim)
    labels = torch.arange(batch) % m.num_classes if m.conditional else None
    run(z, labels)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        run(z, labels)
        calls += 1
    return calls * batch / (time.perf_counter() - start)

"""A training run: set-up (models, data, optimisers, DDP, AMP, transfer, pruning), the loop,
checkpoints, logs and the result.

``train(TrainConfig(...))`` (or ``fastgan-kernels train ...``) is the whole thing; the pieces
live in their own modules (:mod:`.loop` for the update rules, :mod:`.data`, :mod:`.amp`,
:mod:`.checkpoint`, :mod:`.transfer`, :mod:`.compress`, :mod:`.distributed`).

Resume: with ``resume`` set, the checkpoint's config is authoritative for everything that
shapes the run (models, optimisation, data, seed) -- so a resumed run is the same run --
while the ``RUN_FIELDS`` (how long, where to write, how to log) come from the caller, so
``--resume auto --steps 5000`` extends a finished run. A resumed run ignores ``init_from``
(its weights are already in the checkpoint).

Transfer: with ``init_from``, the architecture fields come from that checkpoint (its weights
define them); everything else -- data (e.g. ``classes``), learning rates, steps, pruning --
is this run's own.
"""
from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from typing import Optional

import torch

from ..convert import CubicSparsitySchedule, GradualPruner
from ..models import SharingReport
from . import distributed
from .amp import amp_settings
from .augment import DiffAugment
from .build import Logits, build_models, generator_builder
from .checkpoint import TRAIN_FORMAT, atomic_save, find_resume, load_checkpoint
from .config import TrainConfig
from .data import batch_stream, make_dataset
from .logging import ScalarLogger
from .loop import AdversarialStep, step_generator
from .transfer import freeze_generator_layers, load_weights, trainable

RUN_FIELDS = ("steps", "out_dir", "log", "log_every", "ckpt_every", "resume", "progress", "quality", "num_workers",
              "device", "backend")


@dataclasses.dataclass
class TrainResult:
    config: TrainConfig
    generator: torch.nn.Module  # trained, unwrapped (fused / masked-pruned as configured)
    discriminator: torch.nn.Module
    step: int
    last: dict  # the scalars of the last step
    step_time_s: Optional[float]  # median wall time of one training step in this run (after warm-up)
    checkpoint: Optional[str] = None
    exported: Optional[str] = None  # BSR-exported generator (pruning runs)
    exported_int8: Optional[str] = None  # int8 generator (export_int8)
    quality_before: Optional[object] = None
    quality_after: Optional[object] = None
    sharing: Optional[SharingReport] = None
    frozen: list = dataclasses.field(default_factory=list)
    params_in_sync: Optional[bool] = None  # DDP: every rank ends with identical parameters


def adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam with its fused update (one kernel over every parameter) where this torch has one for the
    parameters' device (CPU and CUDA since torch 2.4), else the default. Same algorithm; on the seed
    GAN's generator (1 thread) a step takes ~0.3 ms instead of ~0.8 ms, ~15% of a training step."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):  # no fused implementation for this device / torch
        return torch.optim.Adam(params, lr=lr, betas=betas)


class Trainer:
    def __init__(self, config: TrainConfig, env: Optional[distributed.DistEnv] = None):
        self.env = env if env is not None else distributed.setup(config.device)
        cfg = config
        resume_path = find_resume(cfg.out_dir, cfg.resume)
        self.resume_state = load_checkpoint(resume_path) if resume_path else None
        if self.resume_state is not None:
            saved = TrainConfig.from_dict(self.resume_state["config"])
            cfg = saved.replace(**{k: getattr(cfg, k) for k in RUN_FIELDS})
        source = None
        if cfg.init_from and self.resume_state is None:
            source = load_checkpoint(cfg.init_from)
            cfg = cfg.replace(**TrainConfig.from_dict(source["config"]).model_dict())
        if cfg.seed is None:
            cfg = cfg.replace(seed=distributed.broadcast_object(int.from_bytes(os.urandom(4), "little"), self.env))
        if cfg.prune_sparsity > 0 and cfg.prune_end < 0:  # fix the schedule now: a resume may change `steps`
            cfg = cfg.replace(prune_end=cfg.prune_end_step)
        self.cfg, self.device = cfg, self.env.device

        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        prune_block = cfg.prune_block if cfg.prune_sparsity > 0 else None
        g, d, self.sharing = build_models(cfg.model_dict(), cfg.fused, cfg.backend, prune_block)
        if source is not None:
            load_weights(g, source["generator"], "generator")
            load_weights(d, source["discriminator"], "discriminator")
        self.frozen = freeze_generator_layers(g, cfg.freeze_g_layers)
        self.g, self.d = g.to(self.device), d.to(self.device)
        self.pruner = None
        if prune_block is not None:
            self.pruner = GradualPruner(self.g, CubicSparsitySchedule(cfg.prune_sparsity, cfg.prune_begin,
                                                                      cfg.prune_end_step, 0.0, cfg.prune_frequency))
        amp_on, amp_dtype, use_scaler = amp_settings(self.device, cfg.amp)
        g_train = distributed.wrap(self.g, self.env)
        d_train = distributed.wrap(Logits(self.d), self.env)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = adam(trainable(self.g), cfg.lr_g, betas)
        self.opt_d = adam(trainable(self.d), cfg.lr_d, betas)
        kind = self.device.type
        self.scalers = (torch.amp.GradScaler(kind, enabled=use_scaler), torch.amp.GradScaler(kind, enabled=use_scaler))
        augment = DiffAugment(cfg.augment_ops, cfg.augment_per_sample, cfg.translation_ratio, cfg.cutout_ratio)
        classes = torch.as_tensor(cfg.classes, dtype=torch.int64) if cfg.classes else None
        self.update = AdversarialStep(self.g, self.d, self.opt_g, self.opt_d, g_train=g_train, d_train=d_train,
                                      augment=augment, fgsm_eps=cfg.fgsm_eps, fgsm_weight=cfg.fgsm_weight,
                                      autocast=(amp_on, amp_dtype), scalers=self.scalers, classes=classes)
        self.step = 0
        if self.resume_state is not None:
            self._load_state(self.resume_state)
        self.dataset = make_dataset(cfg.dataset, cfg.img_size, cfg.channels, cfg.classes)
        per_step = cfg.d_steps * cfg.grad_accum
        self.stream = batch_stream(self.dataset, cfg.batch_size, cfg.seed, self.env.rank, self.env.world_size,
                                   self.step * per_step, cfg.num_workers, self.device)
        self.logger = ScalarLogger(cfg.out_dir, cfg.log, enabled=self.env.is_main)
        self.meter = None
        if cfg.quality and self.env.is_main:
            from .quality import QualityMeter

            real = torch.stack([self.dataset[i][0] for i in range(min(len(self.dataset), 2048))])
            self.meter = QualityMeter(real, digits=cfg.dataset == "digits" and cfg.channels == 1)

    # --- checkpoints ----------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.cfg.out_dir, "last.pt")

    def state_dict(self) -> dict:
        return {"format": TRAIN_FORMAT, "builder": generator_builder(self.cfg.model_dict()),
                "config": self.cfg.to_dict(), "step": self.step, "world_size": self.env.world_size,
                "generator": self.g.state_dict(), "discriminator": self.d.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scalers[1].state_dict(), "scaler_d": self.scalers[0].state_dict(),
                "pruner": self.pruner.state_dict() if self.pruner is not None else None}

    def _load_state(self, state: dict) -> None:
        if state.get("format") != TRAIN_FORMAT:
            raise ValueError(f"not a training checkpoint (format {state.get('format')!r}, want {TRAIN_FORMAT!r})")
        self.g.load_state_dict(state["generator"])
        self.d.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler_g"):
            self.scalers[1].load_state_dict(state["scaler_g"])
        if state.get("scaler_d"):
            self.scalers[0].load_state_dict(state["scaler_d"])
        if self.pruner is not None and state.get("pruner"):
            self.pruner.load_state_dict(state["pruner"])
        self.step = int(state["step"])

    def save(self) -> Optional[str]:
        """Rank 0 writes ``out_dir/last.pt`` atomically; every rank waits for it."""
        path = None
        if self.env.is_main:
            path = atomic_save(self.state_dict(), self.checkpoint_path)
        distributed.barrier(self.env)
        return path

    # --- the loop -------------------------------------------------------------------------------
    def train_step(self) -> dict:
        cfg = self.cfg
        rng = step_generator(cfg.seed, self.env.rank, self.step)
        stats = {}
        for _ in range(cfg.d_steps):
            batches = [next(self.stream) for _ in range(cfg.grad_accum)]
            stats.update(self.update.discriminator_update(batches, rng))
        stats.update(self.update.generator_update(cfg.grad_accum, cfg.batch_size, rng))
        if self.pruner is not None:
            stats["sparsity"] = self.pruner.step()
        self.step += 1
        return stats

    def fit(self) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, main = self.cfg, self.env.is_main
        if main:
            os.makedirs(cfg.out_dir, exist_ok=True)
            with open(os.path.join(cfg.out_dir, "config.json"), "w") as f:
                json.dump(cfg.to_dict(), f, indent=1)
        before = self.meter.evaluate(self.g, cfg.classes) if self.meter is not None else None
        if before is not None:
            self.logger.log(self.step, {f"quality/{k}": v for k, v in before.to_dict().items()})
        bar = tqdm(total=cfg.steps, initial=min(self.step, cfg.steps), disable=not (cfg.progress and main),
                   desc="train", dynamic_ncols=True)
        times, stats = [], {}
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                stats = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times.append(time.perf_counter() - t0)
                if main and self.step % cfg.log_every == 0:
                    self.logger.log(self.step, dict(stats, step_time_ms=1e3 * times[-1]))
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    self.save()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in stats.items() if k in ("loss_d", "loss_g", "sparsity")},
                                refresh=False)
        finally:
            bar.close()
        checkpoint = self.save()
        exported = exported_int8 = None
        if main:
            exported, exported_int8 = self._export()
        after = self.meter.evaluate(self.g, cfg.classes) if self.meter is not None else None
        if after is not None:
            self.logger.log(self.step, {f"quality/{k}": v for k, v in after.to_dict().items()})
        in_sync = None
        if self.env.distributed:
            in_sync = distributed.parameters_in_sync(self.g, self.env) and distributed.parameters_in_sync(self.d,
                                                                                                        self.env)
        self.logger.close()
        warm = times[3:] if len(times) > 6 else times
        return TrainResult(cfg, self.g, self.d, self.step, stats, statistics.median(warm) if warm else None,
                           checkpoint, exported, exported_int8, before, after, self.sharing, self.frozen, in_sync)

    def _export(self) -> tuple[Optional[str], Optional[str]]:
        """The compressed generators a run asked for: BSR (pruning runs), int8 (``export_int8``)."""
        from .compress import compress_generator, export_bsr, save_compressed

        cfg, bsr_path, int8_path = self.cfg, None, None
        if self.pruner is not None:
            g, info = export_bsr(self.g)
            bsr_path = save_compressed(os.path.join(cfg.out_dir, "generator_bsr.pt"), g, cfg.model_dict(), info)
        if cfg.export_int8:
            g, info = compress_generator(self.g, cfg.model_dict(), int8=True, seed=cfg.seed, classes=cfg.classes)
            int8_path = save_compressed(os.path.join(cfg.out_dir, "generator_int8.pt"), g, cfg.model_dict(), info)
        return bsr_path, int8_path


def train(config: Optional[TrainConfig] = None, **overrides) -> TrainResult:
    """Train a GAN (``config`` and/or keyword overrides of :class:`TrainConfig`); see the package docs."""
    cfg = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    env = distributed.setup(cfg.device)
    try:
        return Trainer(cfg, env).fit()
    finally:
        distributed.teardown(env)

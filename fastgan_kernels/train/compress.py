"""Compressing a trained generator, and the file format that ``generate`` loads.

* Pruning in the loop happens in the trainer (masked ``BlockSparseLinear`` layers tightened
  by ``GradualPruner`` along a ``CubicSparsitySchedule``); :func:`export_bsr` then switches
  them to BSR, where the block-sparse kernels never read a pruned block.
* :func:`compress_generator` is what ``fastgan-kernels convert`` runs on a checkpoint:
  one-shot block pruning (``prune``) and/or int8 (``quantize`` in static mode, its activation
  scales calibrated on the generator's own latents -- the inputs it will see in use).
  Both together prune first, then quantise the pruned model: each pruned layer becomes a
  ``BlockSparseInt8Linear`` (int8 kept blocks, pruned blocks never stored or read), or a dense
  ``Int8Linear`` below the int8 break-even sparsity; the info holds both reports and the PSNR
  against the unpruned and the pruned float generator.

Serialisation: not pickled modules (brittle across code changes, and unsafe to load) but
``{"format", "builder", "model" (the architecture fields of TrainConfig), "compression"
(what was applied: {"prune": {"sparsity", "block"}, "quantize": {"mode", "observer"}}),
"state_dict", "report"}``. :func:`build_generator` rebuilds the module tree from ``model``
and ``compression`` and loads the ``state_dict`` into it; it also reads training
checkpoints, so ``generate`` takes either.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .. import metrics
from ..convert import prune, quantize
from ..nn import BlockSparseLinear
from .build import generator_builder, generator_input, is_conditional, plain_generator
from .checkpoint import TRAIN_FORMAT, atomic_save, load_checkpoint
from .config import TrainConfig
from .transfer import load_weights

COMPRESSED_FORMAT = "fastgan_kernels.compressed/1"


def export_bsr(g: nn.Module) -> tuple[nn.Module, dict]:
    """A copy of ``g`` with every masked BlockSparseLinear switched to BSR; returns (copy, compression info)."""
    out = copy.deepcopy(g)
    layers = {n: m for n, m in out.named_modules() if isinstance(m, BlockSparseLinear)}
    if not layers:
        raise ValueError("export_bsr: the generator has no BlockSparseLinear layers (train with prune_sparsity > 0)")
    for m in layers.values():
        m.to_bsr()
    blocks = {m.block for m in layers.values()}
    total = sum(m.nnz_blocks / (1.0 - m.sparsity) if m.sparsity < 1 else 0 for m in layers.values())
    achieved = 1.0 - sum(m.nnz_blocks for m in layers.values()) / total if total else 0.0
    info = {"prune": {"sparsity": achieved, "block": list(blocks.pop()) if len(blocks) == 1 else None,
                      "layers": {n: round(m.sparsity, 4) for n, m in layers.items()}}}
    return out, info


def calibration_inputs(g: nn.Module, batches: int = 8, batch_size: int = 64, seed: int = 0,
                       classes=None) -> list[torch.Tensor]:
    """Inputs of ``g.net`` for int8 calibration: standard-normal latents (and, conditional, labels
    cycling over ``classes``), drawn from their own seeded stream."""
    gen = torch.Generator().manual_seed(seed)
    device = next(g.parameters()).device
    out = []
    with torch.no_grad():
        for _ in range(batches):
            z = torch.randn(batch_size, g.latent_dim, generator=gen).to(device)
            labels = None
            if is_conditional(g):
                pool = torch.as_tensor(list(classes) if classes else range(g.num_classes))
                labels = pool[torch.randint(len(pool), (batch_size,), generator=gen)].to(device)
            out.append(generator_input(g, z, labels))
    return out


def compress_generator(g: nn.Module, model: dict, prune_sparsity: float = 0.0, block=(16, 16),
                       int8: bool = False, observer: str = "max", calibration_batches: int = 8,
                       seed: int = 0, classes=None) -> tuple[nn.Module, dict]:
    """Prune (BSR) and/or quantise (static int8) a trained generator; returns (model, compression info).

    ``g`` may be plain, fused or masked-pruned (its weights are read densely); the result is
    a new module on the CPU. The info holds the reports and the PSNR of the compressed model's
    images against the uncompressed one's on held-out latents.
    """
    dense = plain_generator(model)
    load_weights(dense, {k: v.detach().cpu() for k, v in g.state_dict().items()}, "generator")
    dense.eval()
    reference = dense
    info: dict = {}
    out = copy.deepcopy(dense)
    pruned = None
    if prune_sparsity > 0:
        out, report = prune(out, prune_sparsity, block=tuple(block), mode="bsr")
        info["prune"] = {"sparsity": report.sparsity, "block": list(block), "report": str(report)}
        pruned = copy.deepcopy(out) if int8 else None
    if int8:
        calib = calibration_inputs(out, calibration_batches, seed=seed, classes=classes)
        out.net, report = quantize(out.net, calibration=calib, mode="static", observer=observer)
        info["quantize"] = {"mode": "static", "observer": observer, "report": str(report),
                            "model_sqnr_db": report.model_sqnr_db}
    held_out = calibration_inputs(dense, 2, seed=seed + 12345, classes=classes)
    with torch.no_grad():
        ref = torch.cat([reference.net(x) for x in held_out])
        got = torch.cat([out.net(x).float() for x in held_out])
    info["psnr_db_vs_uncompressed"] = metrics.psnr(ref, got)
    if pruned is not None:
        with torch.no_grad():
            info["psnr_db_vs_pruned"] = metrics.psnr(torch.cat([pruned.net(x) for x in held_out]), got)
    return out.eval(), info


def save_compressed(path: str, g: nn.Module, model: dict, compression: dict) -> str:
    """Write a compressed generator (see the module docstring) atomically."""
    spec = {k: {kk: vv for kk, vv in v.items() if kk in ("sparsity", "block", "mode", "observer", "model_sqnr_db")}
            for k, v in compression.items() if k in ("prune", "quantize")}
    blob = {"format": COMPRESSED_FORMAT, "builder": generator_builder(model), "model": dict(model),
            "compression": spec, "state_dict": {k: v.detach().cpu() for k, v in g.state_dict().items()},
            "report": {k: v for k, v in compression.items() if k not in ("prune", "quantize")}}
    return atomic_save(blob, path)


def _skeleton(model: dict, compression: dict, state_dict: dict) -> nn.Module:
    """The module tree a compressed state_dict loads into."""
    g = plain_generator(model)
    quant = compression.get("quantize")
    if quant:
        block = (compression.get("prune") or {}).get("block")
        # Sparse int8 layers: those saved with BSR keys (every kept block in the skeleton; loading resizes).
        sparse = [k[len("net."):-len(".values")] for k in state_dict if k.startswith("net.") and k.endswith(".values")]
        if sparse:
            g, _ = prune(g, 0.0, block=tuple(block or (16, 16)), mode="bsr", inplace=True,
                         skip=lambda name, _: name[len("net."):] not in sparse)
        dummy = [torch.randn(4, g.net[0].in_features)]
        g.net, _ = quantize(g.net, calibration=dummy, mode=quant.get("mode", "static"),
                            observer=quant.get("observer", "max"), sparse=sparse)
    elif compression.get("prune"):
        block = compression["prune"].get("block") or (16, 16)
        g, _ = prune(g, 0.0, block=tuple(block), mode="masked", inplace=True)  # BSR keys switch it on load
    return g


def build_generator(path: str, device="cpu", fused: bool = True, backend: str = "auto") -> tuple[nn.Module, dict]:
    """Load a generator from a compressed file or a training checkpoint; returns (G in eval mode, metadata)."""
    from .build import build_models

    blob = load_checkpoint(path)
    fmt = blob.get("format")
    if fmt == COMPRESSED_FORMAT:
        if blob.get("builder") not in ("mlp_generator", "conditional_mlp_generator"):
            raise ValueError(f"{path}: unknown generator builder {blob.get('builder')!r}")
        g = _skeleton(blob["model"], blob["compression"], blob["state_dict"])
        g.load_state_dict(blob["state_dict"])
        meta = {"format": fmt, "model": blob["model"], "compression": blob["compression"], **blob.get("report", {})}
    elif fmt == TRAIN_FORMAT:
        cfg = TrainConfig.from_dict(blob["config"])
        prune_block = cfg.prune_block if cfg.prune_sparsity > 0 else None
        g, _, _ = build_models(cfg.model_dict(), fused, backend, prune_block)
        g.load_state_dict(blob["generator"])
        meta = {"format": fmt, "model": cfg.model_dict(), "step": blob.get("step"), "config": cfg.to_dict()}
    else:
        raise ValueError(f"{path}: not a fastgan_kernels checkpoint or compressed generator (format {fmt!r})")
    return g.to(device).eval(), meta


def load_train_checkpoint(path: str) -> tuple[dict, TrainConfig]:
    blob = load_checkpoint(path)
    if blob.get("format") != TRAIN_FORMAT:
        raise ValueError(f"{path}: not a training checkpoint (format {blob.get('format')!r})")
    return blob, TrainConfig.from_dict(blob["config"])


def describe(g: nn.Module) -> str:
    """One line per weight layer: its type and the compression it carries."""
    lines = []
    for name, m in g.named_modules():
        if isinstance(m, (nn.Linear,)) or type(m).__name__ in ("FusedLinear", "BlockSparseLinear", "Int8Linear",
                                                               "BlockSparseInt8Linear", "AutocastFusedLinear", "AutocastBlockSparseLinear"):
            lines.append(f"{name}: {m}")
    return "\n".join(lines)


__all__ = ["COMPRESSED_FORMAT", "export_bsr", "calibration_inputs", "compress_generator", "save_compressed",
           "build_generator", "load_train_checkpoint", "describe"]


"""Loading the generator the service runs, choosing its runner, and the batch function.

* :func:`load` reads a ``convert`` output or a training checkpoint (``train.build_generator``,
  conditional generators too) and describes it for ``GET /v1/model``: every weight layer with
  its format (fp32 dense, BSR block-sparse, int8), sparsity, and the PSNR / SQNR that
  ``convert`` stored.
* The runner: ``fastgan_kernels.compile_generator(model)`` (the whole generator as one call)
  where the package has it and it accepts this model, checked against the converted model on a
  probe batch; otherwise the converted model itself. ``/v1/model`` says which one runs and why.
* :class:`BatchRunner` is what a batch of latents goes through, in a worker thread: the model
  call, its GPU energy window (GpuMonitor, on CUDA) and the test-only fault hooks.

Test-only hooks, read from the environment when the service starts and inert unless
``FASTGAN_SERVE_TEST_HOOKS=1``: ``FASTGAN_SERVE_TEST_DELAY_MS`` sleeps that long in every
model call (to hold requests in flight), and a request with the header
``X-Test-Fail-Batch: 1`` makes the model call of its batch raise.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

FORMATS = ("png", "png_list", "npy")


class InjectedFailure(RuntimeError):
    """The test hook's failing batch."""


@dataclass
class LoadedModel:
    module: nn.Module            # what runs a batch (compiled or converted)
    converted: nn.Module         # the generator as loaded
    runner: str                  # "compile_generator" or "converted"
    runner_note: str
    conditional: bool
    latent_dim: int
    num_classes: Optional[int]
    image_shape: tuple[int, int, int]
    device: torch.device
    info: dict = field(default_factory=dict)


def _layer_info(name: str, m: nn.Module) -> dict:
    kind = type(m).__name__
    row = {"name": name, "type": kind, "in_features": m.in_features, "out_features": m.out_features,
           "activation": getattr(m, "activation", None)}
    if kind == "BlockSparseLinear":
        row.update(format="bsr" if m.mode == "bsr" else "masked", sparsity=round(m.sparsity, 4),
                   block=list(m.block), nnz_blocks=m.nnz_blocks)
    elif kind == "BlockSparseInt8Linear":  # pruned and quantised, kept sparse
        row.update(format="bsr_int8", input_quant=m.input_quant, sparsity=round(m.sparsity, 4),
                   block=list(m.block), nnz_blocks=m.nnz_blocks)
    elif kind == "Int8Linear":
        row.update(format="int8", input_quant=m.input_quant)
        w = getattr(m, "weight_int8", None)
        if w is not None:  # int8 with zeroed (pruned) blocks: dense compute, sparse values
            row["sparsity"] = round(float((w == 0).float().mean()), 4)
    else:
        weight = getattr(m, "weight", None)
        row["format"] = f"dense {str(weight.dtype).replace('torch.', '')}" if weight is not None else "dense"
    return row


def describe(g: nn.Module, meta: dict) -> dict:
    from ..train.build import generator_layers

    layers = [_layer_info(n, m) for n, m in generator_layers(g)]
    report = {k: v for k, v in meta.items() if k not in ("model", "compression", "format", "config")}
    quant = meta.get("compression", {}).get("quantize") or {}
    return {
        "source_format": meta.get("format"),
        "architecture": meta.get("model"),
        "compression": meta.get("compression", {}),
        "psnr_db_vs_uncompressed": report.pop("psnr_db_vs_uncompressed", None),
        # convert prints the SQNR; files written before it was stored carry none (reported as null).
        "sqnr_db": report.pop("model_sqnr_db", None) or quant.get("model_sqnr_db"),
        "training_step": meta.get("step"),
        "layers": layers,
        "parameters_bytes": sum(t.numel() * t.element_size() for t in list(g.parameters()) + list(g.buffers())),
    }


def _run(module: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    return module(z, labels) if labels is not None else module(z)


def _try_compiled(g: nn.Module, conditional: bool, latent_dim: int, num_classes: Optional[int],
                  device) -> tuple[Optional[nn.Module], str]:
    """(compile_generator(g) if it exists, accepts g and matches it on a probe batch, else None; why)."""
    import fastgan_kernels

    compile_generator = getattr(fastgan_kernels, "compile_generator", None)
    if compile_generator is None:
        return None, "fastgan_kernels.compile_generator is not in this version of the package"
    try:
        compiled = compile_generator(g)
        gen = torch.Generator().manual_seed(0)
        z = torch.randn(5, latent_dim, generator=gen).to(device)
        labels = torch.arange(5, device=device) % num_classes if conditional else None
        with torch.inference_mode():
            want, got = _run(g, z, labels).float(), _run(compiled, z, labels).float()
        if got.shape != want.shape or not torch.allclose(got, want, atol=2e-2, rtol=0):
            return None, "compile_generator's output differs from the converted model's on a probe batch"
    except Exception as exc:  # it declined this model: the converted model serves
        return None, f"compile_generator declined this model: {type(exc).__name__}: {exc}"[:300]
    return compiled, "compile_generator accepted the model (checked on a probe batch)"


def load(path: str, device: str = "cpu", runner: str = "auto") -> LoadedModel:
    from ..train import build_generator
    from ..train.build import is_conditional

    g, meta = build_generator(path, device)
    conditional = is_conditional(g)
    latent_dim, num_classes = int(g.latent_dim), (int(g.num_classes) if conditional else None)
    image_shape = (int(g.channels), int(g.img_size), int(g.img_size))
    module, name, note = g, "converted", "runner 'converted' asked for"
    if runner in ("auto", "compiled"):
        compiled, note = _try_compiled(g, conditional, latent_dim, num_classes, device)
        if compiled is not None:
            module, name = compiled, "compile_generator"
        elif runner == "compiled":
            raise ValueError(f"runner 'compiled' asked for, but {note}")
    info = describe(g, meta)
    info.update(runner=name, runner_note=note, conditional=conditional, num_classes=num_classes,
                latent_dim=latent_dim, image_shape=list(image_shape), device=str(device), formats=list(FORMATS),
                checkpoint=os.path.basename(path))
    return LoadedModel(module, g, name, note, conditional, latent_dim, num_classes, image_shape,
                       torch.device(device), info)


class BatchRunner:
    """Runs one batch on the model (called in the worker thread); energy windows on CUDA."""

    def __init__(self, model: LoadedModel, metrics=None, threads: Optional[int] = None):
        self.model, self.metrics = model, metrics
        if threads:  # process-wide in torch; the service runs one model, so it is this runner's setting
            torch.set_num_threads(threads)
        self.hooks = os.environ.get("FASTGAN_SERVE_TEST_HOOKS") == "1"
        self.delay_s = float(os.environ.get("FASTGAN_SERVE_TEST_DELAY_MS", "0")) / 1e3 if self.hooks else 0.0
        self.monitor = None
        if model.device.type == "cuda" and metrics is not None:
            from ..profile import GpuMonitor

            self.monitor, reason = GpuMonitor.create(model.device.index or 0)
            if self.monitor is None:
                metrics.gpu_energy_unavailable(reason)
            else:
                metrics.enable_gpu()

    @torch.inference_mode()
    def __call__(self, z: torch.Tensor, labels: Optional[torch.Tensor], inject_failure: bool = False) -> torch.Tensor:
        if self.hooks and inject_failure:
            raise InjectedFailure("injected failure (X-Test-Fail-Batch)")
        if self.delay_s:
            time.sleep(self.delay_s)
        dev = self.model.device
        z = z.to(dev)
        labels = labels.to(dev) if labels is not None else None
        if self.monitor is None:
            return _run(self.model.module, z, labels).float().cpu()
        self.monitor.begin_window("batch")
        out = _run(self.model.module, z, labels).float().cpu()  # .cpu() synchronises: the window is the call
        window = self.monitor.end_window("batch")
        with self.monitor._lock:  # a long-running service keeps no history: the window is all it needs
            self.monitor.samples.clear()
        if window.energy_j is not None and self.metrics is not None:
            self.metrics.observe_energy(window.energy_j, window.time_s, z.shape[0])
        return out

"""Building the GAN's models from a config, in plain, fused or masked-pruned form.

One place decides what a config means structurally, so that training, resume, ``generate``
and ``convert`` all rebuild exactly the module tree whose ``state_dict`` a checkpoint holds:

* plain models (:class:`MLPGenerator` / :class:`ConditionalMLPGenerator` and their
  discriminators) with the configured widths, optionally with tied equal-shape layers;
* ``fused=True``: ``fuse(G)`` (Linear + LeakyReLU/Tanh -> FusedLinear) and ``fuse(D.net)``
  (D's last Linear stays a Linear, so ``D.logits`` keeps working: the Sigmoid is folded in
  only for inference, by ``MLPDiscriminator.fused_for_inference``);
* ``prune_sparsity > 0``: the generator's layers become masked ``BlockSparseLinear`` (fused
  activation included) that gradual pruning tightens during training.

The fused, pruned and plain forms share ``state_dict`` keys (``net.0.weight``, ...), so any of
them loads weights saved from any other (masks and BSR aside; see ``transfer.dense_state_dict``).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..convert import fuse, prune
from ..models import (ConditionalMLPDiscriminator, ConditionalMLPGenerator, MLPDiscriminator, MLPGenerator,
                      SharingReport, tie_equal_shapes)

GENERATOR_BUILDERS = ("mlp_generator", "conditional_mlp_generator")


def generator_builder(model: dict) -> str:
    """The builder tag of a model config dict (saved next to the weights instead of pickled modules)."""
    return "conditional_mlp_generator" if model.get("conditional") else "mlp_generator"


def plain_generator(model: dict) -> nn.Module:
    """The plain generator of a model config (``TrainConfig.model_dict()``)."""
    common = dict(latent_dim=model["latent_dim"], hidden=tuple(model["g_hidden"]), img_size=model["img_size"],
                  channels=model["channels"])
    if model.get("conditional"):
        return ConditionalMLPGenerator(model["num_classes"], embed_dim=model["embed_dim"], **common)
    return MLPGenerator(**common)


def plain_discriminator(model: dict) -> nn.Module:
    common = dict(img_size=model["img_size"], channels=model["channels"], hidden=tuple(model["d_hidden"]))
    if model.get("conditional"):
        return ConditionalMLPDiscriminator(model["num_classes"], embed_dim=model["embed_dim"], **common)
    return MLPDiscriminator(**common)


def build_models(model: dict, fused: bool = True, backend: str = "auto", prune_block: Optional[tuple] = None,
                 ) -> tuple[nn.Module, nn.Module, Optional[SharingReport]]:
    """(G, D, sharing report) for a model config; ``prune_block`` makes G's layers masked BlockSparseLinear."""
    g, d = plain_generator(model), plain_discriminator(model)
    report = None
    if model.get("share_weights"):
        if prune_block is not None:
            raise ValueError("share_weights and pruning cannot be combined: tied layers would need one block "
                             "mask but are pruned layer by layer")
        rg, rd = tie_equal_shapes(g), tie_equal_shapes(d)
        report = SharingReport([[f"G.{n}" for n in grp] for grp in rg.groups] +
                               [[f"D.{n}" for n in grp] for grp in rd.groups],
                               rg.params_before + rd.params_before, rg.params_after + rd.params_after)
    if prune_block is not None:
        g, _ = prune(g, 0.0, block=tuple(prune_block), mode="masked", backend=backend, inplace=True)
    elif fused:
        g = fuse(g, backend=backend, inplace=True)
    if fused:
        d.net = fuse(d.net, backend=backend, inplace=True)
    return g, d, report


def generator_layers(g: nn.Module) -> list[tuple[str, nn.Module]]:
    """G's weight layers in forward order (Linear, FusedLinear, BlockSparseLinear, Int8Linear)."""
    return [(n, m) for n, m in g.named_modules()
            if n.startswith("net.") and n.count(".") == 1 and hasattr(m, "in_features")]


def model_device(m: nn.Module) -> torch.device:
    """Where ``m`` lives (its first parameter or buffer; int8 models have buffers only)."""
    for t in m.parameters():
        return t.device
    for t in m.buffers():
        return t.device
    return torch.device("cpu")


def is_conditional(g: nn.Module) -> bool:
    return hasattr(g, "num_classes") and hasattr(g, "embed")


def run_generator(g: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """G(z) or G(z, labels), whichever the model takes (also through DDP)."""
    return g(z, labels) if labels is not None else g(z)


def generator_input(g: nn.Module, z: torch.Tensor, labels: Optional[torch.Tensor]) -> torch.Tensor:
    """What ``g.net`` sees for (z, labels): the int8 calibration input."""
    return g.net_input(z, labels) if is_conditional(g) else z


class Logits(nn.Module):
    """D's pre-Sigmoid score as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, d: nn.Module):
        super().__init__()
        self.d = d

    def forward(self, img: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.d.logits(img, labels) if labels is not None else self.d.logits(img)

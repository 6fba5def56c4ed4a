"""Conditional MLP GAN: the class label is embedded and concatenated to the input (Mirza & Osindero, 2014).

The generator sees ``[z, embed(y)]``, the discriminator ``[flatten(img), embed(y)]``. Both keep
the layer stack in ``self.net`` (an ``nn.Sequential`` of ``nn.Linear`` + activation), exactly
like the unconditional seed models, so ``fuse``, ``prune`` and ``quantize`` convert ``net``
unchanged; the embedding stays a plain ``nn.Embedding`` (a table lookup, nothing to fuse).
As in :class:`~fastgan_kernels.models.MLPDiscriminator`, the discriminator ends ``net`` with
its last Linear and keeps the Sigmoid apart: ``logits(img, y)`` for training with
BCE-with-logits, ``forward`` for probabilities.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .mlp import _mlp


def _check_labels(labels: torch.Tensor, batch: int, num_classes: int, who: str) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{who}: labels must be an int64/int32 tensor of class indices, got "
                        f"{type(labels).__name__ if not isinstance(labels, torch.Tensor) else labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"{who}: labels must have shape ({batch},) (one per sample), got {tuple(labels.shape)}")


class ConditionalMLPGenerator(nn.Module):
    """(z, label) -> image ``[B, channels, img, img]`` in [-1, 1].

    ``net`` maps ``latent_dim + embed_dim`` -> hidden... -> channels*img*img with LeakyReLU between
    layers and Tanh at the end.
    """

    def __init__(self, num_classes: int = 10, latent_dim: int = 100, hidden: Sequence[int] = (256, 512),
                 img_size: int = 28, channels: int = 1, embed_dim: int = 10, negative_slope: float = 0.2):
        super().__init__()
        if num_classes < 1 or embed_dim < 1:
            raise ValueError(f"num_classes and embed_dim must be >= 1, got {num_classes}, {embed_dim}")
        self.num_classes, self.latent_dim, self.embed_dim = num_classes, latent_dim, embed_dim
        self.img_size, self.channels = img_size, channels
        self.embed = nn.Embedding(num_classes, embed_dim)
        sizes = [latent_dim + embed_dim, *hidden, channels * img_size * img_size]
        self.net = _mlp(sizes, nn.LeakyReLU(negative_slope), nn.Tanh())

    def net_input(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """What ``net`` sees: ``[z, embed(labels)]`` (also the calibration input for int8)."""
        _check_labels(labels, z.shape[0], self.num_classes, type(self).__name__)
        emb = self.embed(labels)
        return torch.cat([z, emb.to(z.dtype)], dim=1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.net(self.net_input(z, labels))
        return out.view(z.shape[0], self.channels, self.img_size, self.img_size)

    def sample_latent(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)

    def sample_labels(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(self.num_classes, (n,), device=device, generator=generator)


class ConditionalMLPDiscriminator(nn.Module):
    """(image, label) -> probability of "real"; ``logits(img, labels)`` gives the pre-Sigmoid score."""

    def __init__(self, num_classes: int = 10, img_size: int = 28, channels: int = 1,
                 hidden: Sequence[int] = (512, 256), embed_dim: int = 10, negative_slope: float = 0.2):
        super().__init__()
        if num_classes < 1 or embed_dim < 1:
            raise ValueError(f"num_classes and embed_dim must be >= 1, got {num_classes}, {embed_dim}")
        self.num_classes, self.embed_dim, self.img_size, self.channels = num_classes, embed_dim, img_size, channels
        self.embed = nn.Embedding(num_classes, embed_dim)
        sizes = [channels * img_size * img_size + embed_dim, *hidden, 1]
        self.net = _mlp(sizes, nn.LeakyReLU(negative_slope), None)
        self.out_act = nn.Sigmoid()

    def logits(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The pre-Sigmoid score ``[B, 1]``."""
        _check_labels(labels, img.shape[0], self.num_classes, type(self).__name__)
        flat = img.reshape(img.shape[0], -1)
        return self.net(torch.cat([flat, self.embed(labels).to(flat.dtype)], dim=1))

    def forward(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.logits(img, labels))

    def fused_for_inference(self, backend: str = "auto") -> "ConditionalDiscriminatorInference":
        """Fused layers with the Sigmoid folded into the last one; shares the parameters (so it follows
        further training), leaving ``self.net`` untouched."""
        from ..convert import fuse
        from ..nn import FusedLinear

        body = fuse(nn.Sequential(*self.net), backend=backend, inplace=True)  # a new container, same layers
        last = body[len(body) - 1]
        linear = last if isinstance(last, nn.Linear) else last.to_linear()[0]
        body[len(body) - 1] = FusedLinear.from_linear(linear, "sigmoid", backend=backend)
        return ConditionalDiscriminatorInference(self, body)


class ConditionalDiscriminatorInference(nn.Module):
    """(image, label) -> probability, through ``body`` (fused, Sigmoid included) and the shared embedding."""

    def __init__(self, source: ConditionalMLPDiscriminator, body: nn.Sequential):
        super().__init__()
        self.num_classes, self.embed, self.body = source.num_classes, source.embed, body

    def forward(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, img.shape[0], self.num_classes, type(self).__name__)
        flat = img.reshape(img.shape[0], -1)
        return self.body(torch.cat([flat, self.embed(labels).to(flat.dtype)], dim=1))

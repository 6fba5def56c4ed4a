"""The MLP GAN as the most-copied public PyTorch GAN code writes it (not this project's own models).

* :class:`BatchNormGenerator` (``bn_generator()``): latent 100 -> 128 -> 256 -> 512 -> 1024 -> 784,
  each hidden block ``Linear -> BatchNorm1d(out, 0.8) -> LeakyReLU(0.2, inplace=True)`` except the
  first (no BatchNorm), then ``Linear -> Tanh``; the forward reshapes to images with ``view``.
  The ``0.8`` is BatchNorm1d's second positional argument, ``eps`` (the code meant momentum),
  and is kept: a converter must fold whatever eps a model has.
* :class:`DropoutConditionalDiscriminator` (``dropout_discriminator()``): the label embedded and
  concatenated to the flattened image, then ``Linear(794, 512) -> LeakyReLU``, two
  ``Linear(512, 512) -> Dropout(0.4) -> LeakyReLU`` blocks and ``Linear(512, 1)``.

They are test and benchmark subjects for ``fuse`` / ``prune`` / ``quantize`` / ``explain``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _block(fan_in: int, fan_out: int, normalize: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(fan_in, fan_out)]
    if normalize:
        layers.append(nn.BatchNorm1d(fan_out, 0.8))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class BatchNormGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, hidden: Sequence[int] = (128, 256, 512, 1024),
                 img_shape: tuple[int, ...] = (1, 28, 28)):
        super().__init__()
        self.latent_dim, self.img_shape = latent_dim, tuple(img_shape)
        sizes = [latent_dim, *hidden]
        layers = [m for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])) for m in _block(a, b, normalize=i > 0)]
        self.model = nn.Sequential(*layers, nn.Linear(sizes[-1], math.prod(self.img_shape)), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        img = self.model(z)
        return img.view(img.size(0), *self.img_shape)


class DropoutConditionalDiscriminator(nn.Module):
    def __init__(self, n_classes: int = 10, img_shape: tuple[int, ...] = (1, 28, 28), hidden: int = 512,
                 p: float = 0.4):
        super().__init__()
        self.label_embedding = nn.Embedding(n_classes, n_classes)
        self.model = nn.Sequential(
            nn.Linear(n_classes + math.prod(img_shape), hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), nn.Dropout(p), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), nn.Dropout(p), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, 1))

    def forward(self, img: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d_in = torch.cat((img.view(img.size(0), -1), self.label_embedding(labels)), -1)
        return self.model(d_in)


def bn_generator(**kwargs) -> BatchNormGenerator:
    """The BatchNorm MLP generator (100 -> 128 -> 256 -> 512 -> 1024 -> 784)."""
    return BatchNormGenerator(**kwargs)


def dropout_discriminator(**kwargs) -> DropoutConditionalDiscriminator:
    """The conditional discriminator with Linear -> Dropout(0.4) -> LeakyReLU blocks."""
    return DropoutConditionalDiscriminator(**kwargs)


def with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm of ``model`` non-trivial running statistics and affine parameters (in
    place), as a trained model has, so folding is tested on more than mean 0 / var 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model

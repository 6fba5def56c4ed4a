"""The reference MLP GAN: the seed generator and discriminator, and a wide generator.

They are plain ``nn.Linear`` + activation stacks inside an ``nn.Sequential``
(``self.net``), exactly what a user would write; ``fastgan_kernels.fuse``,
``prune`` and ``quantize`` turn them into the fast layers.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _mlp(sizes: Sequence[int], hidden_act: nn.Module, out_act: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        last = i == len(sizes) - 2
        if not last:
            layers.append(type(hidden_act)(**_act_kwargs(hidden_act)))
        elif out_act is not None:
            layers.append(out_act)
    return nn.Sequential(*layers)


def _act_kwargs(act: nn.Module) -> dict:
    return {"negative_slope": act.negative_slope} if isinstance(act, nn.LeakyReLU) else {}


class MLPGenerator(nn.Module):
    """latent -> hidden... -> channels*img*img, LeakyReLU between layers, Tanh at the end.

    The seed configuration is latent 100 -> 256 -> 512 -> 28*28 with LeakyReLU(0.2).
    ``forward`` returns images ``[B, channels, img, img]`` in [-1, 1].
    """

    def __init__(self, latent_dim: int = 100, hidden: Sequence[int] = (256, 512), img_size: int = 28,
                 channels: int = 1, negative_slope: float = 0.2):
        super().__init__()
        self.latent_dim, self.img_size, self.channels = latent_dim, img_size, channels
        sizes = [latent_dim, *hidden, channels * img_size * img_size]
        self.net = _mlp(sizes, nn.LeakyReLU(negative_slope), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], self.channels, self.img_size, self.img_size)

    def sample_latent(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, device=device, generator=generator)


class MLPDiscriminator(nn.Module):
    """channels*img*img -> hidden... -> 1 with LeakyReLU, Sigmoid at the end (probability of "real").

    The seed configuration is 28*28 -> 512 -> 256 -> 1. The Sigmoid is kept apart from the
    layer stack (``self.net`` ends with the last Linear): training uses the logits
    (``logits(x)``, BCE-with-logits), and ``fuse()`` leaves that last Linear alone, so the
    logits stay available; :meth:`fused_for_inference` folds the Sigmoid into it.
    """

    def __init__(self, img_size: int = 28, channels: int = 1, hidden: Sequence[int] = (512, 256),
                 negative_slope: float = 0.2):
        super().__init__()
        self.img_size, self.channels = img_size, channels
        sizes = [channels * img_size * img_size, *hidden, 1]
        self.net = _mlp(sizes, nn.LeakyReLU(negative_slope), None)
        self.out_act = nn.Sigmoid()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.out_act(self.logits(img))

    def logits(self, img: torch.Tensor) -> torch.Tensor:
        """The pre-Sigmoid score."""
        return self.net(img.reshape(img.shape[0], -1))

    def fused_for_inference(self, backend: str = "auto") -> nn.Sequential:
        """flatten -> fused layers, the last with the Sigmoid folded in (shares the parameters)."""
        from ..convert import fuse
        from ..nn import FusedLinear

        body = fuse(nn.Sequential(*self.net), backend=backend, inplace=True)  # a new container, same layers
        last = body[len(body) - 1]
        linear = last if isinstance(last, nn.Linear) else last.to_linear()[0]
        body[len(body) - 1] = FusedLinear.from_linear(linear, "sigmoid", backend=backend)
        return nn.Sequential(nn.Flatten(), *body)


def seed_generator(img_size: int = 28) -> MLPGenerator:
    """The seed generator: latent 100 -> 256 -> 512 -> img*img, LeakyReLU 0.2, Tanh."""
    return MLPGenerator(100, (256, 512), img_size, 1)


def seed_discriminator(img_size: int = 28) -> MLPDiscriminator:
    """The seed discriminator: img*img -> 512 -> 256 -> 1, LeakyReLU 0.2, Sigmoid."""
    return MLPDiscriminator(img_size, 1, (512, 256))


def wide_generator() -> MLPGenerator:
    """A wide generator: latent 128 -> 1024 -> 2048 -> 4096 -> 3*64*64."""
    return MLPGenerator(128, (1024, 2048, 4096), 64, 3)


def linear_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of every nn.Linear in ``model``, in order."""
    return [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]


# (K, N) of the generators' layers: the shapes the benchmarks time.
SEED_GENERATOR_LAYERS = [(100, 256), (256, 512), (512, 784)]
WIDE_GENERATOR_LAYERS = [(128, 1024), (1024, 2048), (2048, 4096), (4096, 12288)]

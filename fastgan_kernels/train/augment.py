"""Differentiable augmentation of the discriminator's inputs, in the manner of DiffAugment
(Zhao et al., 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

Why differentiable: with few real images the discriminator memorises them. Augmenting what
D sees -- real *and* fake images, with the same policy -- regularises it; because every op
here is built from differentiable tensor arithmetic and indexing (no PIL, no in-place
writes into the input), the generator's gradient flows through the augmentation of the
fakes, so G is never trained to produce augmented-looking images.

Ops (``policy`` names): ``brightness`` (add U(-0.5, 0.5)), ``saturation`` (scale the
distance to the per-pixel channel mean by U(0, 2); a no-op on grey images), ``contrast``
(scale the distance to the image mean by U(0.5, 1.5)), ``color`` (all three),
``translation`` (shift by up to ``translation_ratio`` of the side, integer pixels, exposed
border filled with ``fill``) and ``cutout`` (a ``cutout_ratio``-sided square set to ``fill``,
its centre anywhere in the image). Values are for images in [-1, 1]; ``fill=-1`` is black,
the digits' background.

Randomness: ``per_sample=True`` (default, as in DiffAugment) draws every parameter per
image; ``per_sample=False`` draws one set per call and applies that same transform to the
whole batch. Either way real and fake batches get independent draws (two calls). Passing
a ``torch.Generator`` makes the draws reproducible (and resumable: the trainer saves its
state in checkpoints).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

COLOR_OPS = ("brightness", "saturation", "contrast")


def _rand(n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """U(0, 1) of shape [n, 1, 1, 1], drawn on the generator's device, returned on x's."""
    dev = generator.device if generator is not None else x.device
    return torch.rand(n, 1, 1, 1, generator=generator, device=dev).to(x.device, x.dtype)


def _randint(low: int, high: int, n: int, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    dev = generator.device if generator is not None else x.device
    return torch.randint(low, high, (n,), generator=generator, device=dev).to(x.device)


def brightness(x, per_sample=True, generator=None):
    return x + (_rand(x.shape[0] if per_sample else 1, x, generator) - 0.5)


def saturation(x, per_sample=True, generator=None):
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x.shape[0] if per_sample else 1, x, generator) * 2.0) + mean


def contrast(x, per_sample=True, generator=None):
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x.shape[0] if per_sample else 1, x, generator) + 0.5) + mean


def translation(x, ratio=0.125, per_sample=True, generator=None, fill=-1.0):
    """Shift each image by (dy, dx) in [-r, r] pixels, r = round(ratio * side); gather, not roll."""
    b, _, h, w = x.shape
    rh, rw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if rh == 0 and rw == 0:
        return x
    n = b if per_sample else 1
    dy = _randint(-rh, rh + 1, n, x, generator).expand(b)
    dx = _randint(-rw, rw + 1, n, x, generator).expand(b)
    padded = torch.nn.functional.pad(x, (rw, rw, rh, rh), value=fill)
    rows = (torch.arange(h, device=x.device)[None, :, None] - dy[:, None, None] + rh).expand(b, h, w)
    cols = (torch.arange(w, device=x.device)[None, None, :] - dx[:, None, None] + rw).expand(b, h, w)
    batch = torch.arange(b, device=x.device)[:, None, None].expand(b, h, w)
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indices first: [B, H, W, C]


def cutout(x, ratio=0.5, per_sample=True, generator=None, fill=-1.0):
    """Set a square of side round(ratio * side) to ``fill``; its centre is uniform over the image."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if sh == 0 or sw == 0:
        return x
    n = b if per_sample else 1
    top = (_randint(0, h, n, x, generator) - sh // 2).expand(b)[:, None, None]
    left = (_randint(0, w, n, x, generator) - sw // 2).expand(b)[:, None, None]
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hole = (rows >= top) & (rows < top + sh) & (cols >= left) & (cols < left + sw)
    return torch.where(hole[:, None], torch.full_like(x, fill), x)


class DiffAugment:
    """Applies a policy (a sequence of op names, or a comma-separated string) to a batch ``[B, C, H, W]``."""

    def __init__(self, policy: Sequence[str] | str = ("color", "translation", "cutout"), per_sample: bool = True,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5, fill: float = -1.0):
        if isinstance(policy, str):
            policy = [p.strip() for p in policy.split(",") if p.strip()]
        ops = []
        for name in policy:
            if name == "color":
                ops += COLOR_OPS
            elif name in COLOR_OPS + ("translation", "cutout"):
                ops.append(name)
            else:
                raise ValueError(f"DiffAugment: unknown op {name!r}; choose from color, {', '.join(COLOR_OPS)}, "
                                 f"translation, cutout")
        for name, r in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0.0 <= r <= 1.0:
                raise ValueError(f"DiffAugment: {name} must be in [0, 1], got {r}")
        self.ops, self.per_sample = tuple(ops), per_sample
        self.translation_ratio, self.cutout_ratio, self.fill = translation_ratio, cutout_ratio, fill

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"DiffAugment: expected images [B, C, H, W], got shape {tuple(x.shape)}")
        for name in self.ops:
            if name == "translation":
                x = translation(x, self.translation_ratio, self.per_sample, generator, self.fill)
            elif name == "cutout":
                x = cutout(x, self.cutout_ratio, self.per_sample, generator, self.fill)
            else:
                x = globals()[name](x, self.per_sample, generator)
        return x

    def __repr__(self) -> str:
        return (f"DiffAugment(ops={list(self.ops)}, per_sample={self.per_sample}, "
                f"translation_ratio={self.translation_ratio}, cutout_ratio={self.cutout_ratio}, fill={self.fill})")

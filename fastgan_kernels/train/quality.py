"""Sample quality that a falling loss cannot fake.

A GAN's losses are a game's score, not a measure of the images: they can fall while the
generator collapses or stays noise. Two measures that look at the images themselves:

* **Kernel MMD** (maximum mean discrepancy, Gretton et al. 2012) between generated and real
  images: the unbiased MMD^2 with a sum of Gaussian kernels whose bandwidths are fixed
  multiples of the real set's median pairwise distance (fixed once, so numbers from
  different generators are comparable). 0 means the two distributions match; it catches
  noise, blur and mode collapse alike (collapsed samples miss most of the real mass).
  ``mmd_floor`` is the same statistic between two disjoint halves of the real data, i.e.
  what a perfect generator would score at this sample size.
* **Classifier confidence**: a small MLP trained on the real digits (about 99% accurate on
  them) is asked about generated digits. ``confident`` is the fraction it classifies with
  probability >= 0.9, ``classes`` how many digits make up at least 2% of those confident
  samples (mode coverage), and for a conditional generator ``label_agreement`` how often
  the predicted digit is the one asked for.

:class:`QualityMeter` bundles them; the training loop, the CLI (``--quality``) and the
tests use it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .build import is_conditional, model_device, run_generator


@functools.lru_cache(maxsize=2)
def digit_classifier(seed: int = 0, steps: int = 400) -> nn.Module:
    """An MLP (64 -> 128 -> 10) trained on all of sklearn's 8x8 digits in [-1, 1]; cached per process."""
    from .data import digits_tensors

    images, labels = digits_tensors(8)
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.1 if p.dim() > 1 else 0.0))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):  # full batch: 1797 images, about a second
        noisy = images + 0.05 * torch.randn(images.shape, generator=gen)
        loss = F.cross_entropy(net(noisy), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval().requires_grad_(False)


def _as_digits(images: torch.Tensor) -> torch.Tensor:
    """[B, C, S, S] in [-1, 1] -> [B, 1, 8, 8] (channel mean, area resize) for the digit classifier."""
    x = images.detach().float().cpu()
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-1] != 8 or x.shape[-2] != 8:
        x = F.adaptive_avg_pool2d(x, 8)
    return x


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: torch.Tensor) -> float:
    """Unbiased MMD^2 between sample sets x [n, d] and y [m, d], kernel sum_s exp(-|a-b|^2 / (2 s^2))."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError("mmd2 needs at least 2 samples on each side")
    gammas = 1.0 / (2.0 * bandwidths.double() ** 2)

    def k(a, b):
        d2 = torch.cdist(a, b).square()
        return sum(torch.exp(-g * d2) for g in gammas)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


@dataclasses.dataclass
class Quality:
    mmd: float
    mmd_floor: float
    confident: Optional[float] = None
    mean_confidence: Optional[float] = None
    classes: Optional[int] = None
    label_agreement: Optional[float] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def __str__(self) -> str:
        parts = [f"MMD^2 {self.mmd:.4f} (real-vs-real floor {self.mmd_floor:.4f})"]
        if self.confident is not None:
            parts.append(f"classifier confident (p>=0.9) on {100 * self.confident:.1f}% of samples, "
                         f"{self.classes} digit classes")
        if self.label_agreement is not None:
            parts.append(f"label agreement {100 * self.label_agreement:.1f}%")
        return "; ".join(parts)


class QualityMeter:
    """Measures generated images against a fixed set of real ones.

    Args:
        real: real images [N, C, S, S] in [-1, 1] (at least 8).
        n: samples per side (real reference, and generated in :meth:`evaluate`).
        digits: also ask the digit classifier (for sklearn's digits and look-alikes).
    """

    def __init__(self, real: torch.Tensor, n: int = 512, digits: bool = True, seed: int = 0):
        real = real.detach().float().cpu()
        if real.shape[0] < 8:
            raise ValueError(f"QualityMeter needs at least 8 real images, got {real.shape[0]}")
        perm = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(seed))
        self.n = min(n, real.shape[0] // 2)
        self.real = real[perm[: self.n]].flatten(1)
        other = real[perm[self.n: 2 * self.n]].flatten(1)
        median = torch.cdist(self.real, self.real).flatten().median().clamp_min(1e-6)
        self.bandwidths = median * torch.tensor([0.25, 0.5, 1.0, 2.0])
        self.mmd_floor = mmd2(other, self.real, self.bandwidths)
        self.classifier = digit_classifier() if digits else None
        self.seed = seed

    def __call__(self, images: torch.Tensor, labels: Optional[torch.Tensor] = None) -> Quality:
        x = images.detach().float().cpu()
        q = Quality(mmd2(x.flatten(1), self.real, self.bandwidths), self.mmd_floor)
        if self.classifier is not None:
            with torch.no_grad():
                probs = self.classifier(_as_digits(x)).softmax(dim=1)
            conf, pred = probs.max(dim=1)
            sure = conf >= 0.9
            counts = torch.bincount(pred[sure], minlength=10)
            q.confident, q.mean_confidence = float(sure.float().mean()), float(conf.mean())
            q.classes = int((counts >= max(1, 0.02 * int(sure.sum()))).sum()) if sure.any() else 0
            if labels is not None:
                q.label_agreement = float((pred == labels.cpu()).float().mean())
        return q

    @torch.no_grad()
    def evaluate(self, g: nn.Module, classes=None) -> Quality:
        """Sample ``n`` images from ``g`` (fixed latents; labels cycling over ``classes``) and measure them."""
        gen = torch.Generator().manual_seed(self.seed + 1)
        device = model_device(g)
        z = torch.randn(self.n, g.latent_dim, generator=gen).to(device)
        labels = None
        if is_conditional(g):
            pool = torch.as_tensor(list(classes) if classes else range(g.num_classes))
            labels = pool[torch.arange(self.n) % len(pool)].to(device)
        was_training = g.training
        g.eval()
        try:
            images = run_generator(g, z, labels)
        finally:
            g.train(was_training)
        return self(images, labels)

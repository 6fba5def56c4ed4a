"""The adversarial training step and loop.

One step = ``d_steps`` discriminator updates, then one generator update (alternating):

* D: ``BCE-with-logits(D(real), 1) + BCE-with-logits(D(G(z).detach()), 0)`` on D's *logits*
  (the Sigmoid stays out of training: numerically stable, and ``fuse`` keeps D's last Linear
  so the logits exist), plus, with ``fgsm_eps > 0``, ``fgsm_weight * BCE(D(x_adv), 1)`` where
  ``x_adv`` is an FGSM step from the real images (D learns to stay right under small
  worst-case perturbations). Real, fake and adversarial images go through D in one batch
  (one forward, one DDP all-reduce).
* G: the non-saturating loss ``BCE-with-logits(D(G(z)), 1)`` (maximise log D(G(z)) instead of
  minimising log(1 - D(G(z))), whose gradient vanishes while D wins easily, early on).
* Adam (2e-4, betas 0.5/0.999) for both by default; with ``grad_accum`` > 1 each update
  averages that many micro-batches (DDP syncs only on the last).

Reproducibility: the latents, fake labels and augmentations of step t come from a
generator seeded with (seed, rank, t), and the data order is a function of (seed, epoch),
so a resumed run continues exactly as the uninterrupted one would have -- no RNG state
needs saving. Mixed precision: see :mod:`.amp`.
"""
from __future__ import annotations

import contextlib
import hashlib
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .augment import DiffAugment
from .build import Logits, is_conditional, run_generator


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """The random stream of one step on one rank (independent of interruptions)."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def bce_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean BCE-with-logits against a constant target, in fp32 (whatever autocast did upstream)."""
    logits = logits.float().reshape(-1)
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def fgsm_examples(d_logits: nn.Module, real: torch.Tensor, labels: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """One FGSM step (Goodfellow et al., 2015) that makes real images look fake to D: ``x + eps *
    sign(grad_x BCE(D(x), 1))``, clipped to the image range [-1, 1]. Only the input gets a
    gradient (``autograd.grad``), so D's parameter gradients are untouched."""
    x = real.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = bce_logits(d_logits(x, labels), 1.0)
        (grad,) = torch.autograd.grad(loss, x)
    return (x + eps * grad.sign()).clamp(-1.0, 1.0).detach()


class AdversarialStep:
    """The update rules, with every model and optimiser passed in (for the loop, DDP and tests).

    Args:
        g, d: the generator and discriminator modules (unwrapped).
        g_train, d_train: what to call for the differentiable passes (DDP wrappers of ``g`` and
            of ``Logits(d)``, or ``g`` and ``Logits(d)`` themselves).
    """

    def __init__(self, g: nn.Module, d: nn.Module, opt_g, opt_d, *, g_train: Optional[nn.Module] = None,
                 d_train: Optional[nn.Module] = None, augment: Optional[DiffAugment] = None,
                 fgsm_eps: float = 0.0, fgsm_weight: float = 1.0, autocast: tuple = (False, None),
                 scalers: Optional[tuple] = None, classes: Optional[torch.Tensor] = None):
        self.g, self.d, self.opt_g, self.opt_d = g, d, opt_g, opt_d
        self.d_logits = Logits(d)
        self.g_train = g_train if g_train is not None else g
        self.d_train = d_train if d_train is not None else self.d_logits
        self.augment = augment if augment else None
        self.fgsm_eps, self.fgsm_weight = fgsm_eps, fgsm_weight
        self.autocast_on, self.autocast_dtype = autocast
        disabled = torch.amp.GradScaler("cpu", enabled=False)
        self.scaler_d, self.scaler_g = scalers if scalers is not None else (disabled, disabled)
        self.conditional = is_conditional(g)
        self.classes = classes
        self.device = next(g.parameters()).device

    # --- helpers --------------------------------------------------------------------------------
    def _autocast(self):
        if not self.autocast_on:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _aug(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        return self.augment(x, rng) if self.augment is not None else x

    def sample(self, n: int, rng: torch.Generator) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Latents and (conditional) labels: uniform over ``classes`` or all of the generator's."""
        z = torch.randn(n, self.g.latent_dim, generator=rng).to(self.device)
        if not self.conditional:
            return z, None
        pool = self.classes if self.classes is not None else torch.arange(self.g.num_classes)
        labels = pool[torch.randint(len(pool), (n,), generator=rng)]
        return z, labels.to(self.device)

    @staticmethod
    def _sync_context(module: nn.Module, last: bool):
        return module.no_sync() if hasattr(module, "no_sync") and not last else contextlib.nullcontext()

    # --- updates --------------------------------------------------------------------------------
    def discriminator_update(self, batches, rng: torch.Generator) -> dict:
        """One D update over the micro-batches ``[(real, labels), ...]``; returns scalars."""
        self.opt_d.zero_grad(set_to_none=True)
        stats = {"loss_d": 0.0, "d_real": 0.0, "d_fake": 0.0}
        if self.fgsm_eps > 0:
            stats["loss_d_fgsm"] = 0.0
        k = len(batches)
        for i, (real, labels) in enumerate(batches):
            n = real.shape[0]
            labels = labels if self.conditional else None
            z, fake_labels = self.sample(n, rng)
            with self._sync_context(self.d_train, i == k - 1):
                with self._autocast():
                    with torch.no_grad():
                        fake = run_generator(self.g, z, fake_labels).to(real.dtype)
                    parts = [self._aug(real, rng), self._aug(fake, rng)]
                    if self.fgsm_eps > 0:
                        parts.append(self._aug(fgsm_examples(self.d_logits, real, labels, self.fgsm_eps), rng))
                    all_labels = None
                    if self.conditional:
                        all_labels = torch.cat([labels, fake_labels] + ([labels] if self.fgsm_eps > 0 else []))
                    logits = self.d_train(torch.cat(parts), all_labels)
                loss_real, loss_fake = bce_logits(logits[:n], 1.0), bce_logits(logits[n:2 * n], 0.0)
                loss = loss_real + loss_fake
                if self.fgsm_eps > 0:
                    loss_adv = bce_logits(logits[2 * n:], 1.0)
                    loss = loss + self.fgsm_weight * loss_adv
                    stats["loss_d_fgsm"] += float(loss_adv.detach()) / k
                self.scaler_d.scale(loss / k).backward()
            stats["loss_d"] += float(loss.detach()) / k
            stats["d_real"] += float(torch.sigmoid(logits[:n].detach().float()).mean()) / k
            stats["d_fake"] += float(torch.sigmoid(logits[n:2 * n].detach().float()).mean()) / k
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        return stats

    def generator_update(self, micro_batches: int, batch_size: int, rng: torch.Generator) -> dict:
        """One G update (non-saturating loss) over ``micro_batches`` fresh latent batches."""
        self.opt_g.zero_grad(set_to_none=True)
        d_params = [p for p in self.d.parameters() if p.requires_grad]
        for p in d_params:  # no gradients into D during G's update: less work, no stale grads
            p.requires_grad_(False)
        loss_sum = 0.0
        try:
            for i in range(micro_batches):
                z, labels = self.sample(batch_size, rng)
                with self._sync_context(self.g_train, i == micro_batches - 1):
                    with self._autocast():
                        fake = run_generator(self.g_train, z, labels)
                        logits = self.d_logits(self._aug(fake, rng), labels)
                    loss = bce_logits(logits, 1.0)
                    self.scaler_g.scale(loss / micro_batches).backward()
                loss_sum += float(loss.detach())
        finally:
            for p in d_params:
                p.requires_grad_(True)
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return {"loss_g": loss_sum / micro_batches}

"""Sampling a generator and writing an image grid (PNG) -- what ``fastgan-kernels generate`` does.

Grids are tiled with plain tensor ops and written with Pillow (in the ``train`` extra); an 8x8
digit is tiny on screen, so tiles are enlarged ``scale`` times by pixel repetition (nearest
neighbour: the generated pixels stay visible as they are, no interpolation blur).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from .build import is_conditional, model_device, run_generator


@torch.no_grad()
def sample_images(g: nn.Module, n: int, seed: int = 0, labels: Optional[Sequence[int]] = None,
                  batch_size: int = 256) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``n`` images from ``g`` (float [n, C, S, S] in [-1, 1] on the CPU) and their labels (conditional).

    Latents come from a generator seeded with ``seed`` (same seed, same images). A conditional
    generator gets ``labels`` cycled to length ``n`` (default: 0, 1, ..., num_classes-1, 0, ...),
    so a grid with ``num_classes`` columns shows one class per column.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    device = model_device(g)
    z = torch.randn(n, g.latent_dim, generator=gen)
    y = None
    if is_conditional(g):
        pool = torch.as_tensor(list(labels) if labels else list(range(g.num_classes)), dtype=torch.int64)
        if pool.numel() == 0 or int(pool.min()) < 0 or int(pool.max()) >= g.num_classes:
            raise ValueError(f"labels must be in [0, {g.num_classes}), got {pool.tolist()}")
        y = pool[torch.arange(n) % pool.numel()]
    g.eval()
    out = []
    for i in range(0, n, batch_size):
        zi = z[i:i + batch_size].to(device)
        yi = y[i:i + batch_size].to(device) if y is not None else None
        out.append(run_generator(g, zi, yi).float().cpu())
    return torch.cat(out), y


def make_grid(images: torch.Tensor, nrow: Optional[int] = None, pad: int = 1, scale: int = 1,
              background: float = 1.0) -> torch.Tensor:
    """Tile ``[B, C, H, W]`` images in [-1, 1] into one uint8 image ``[rows*(H*scale+pad)+pad, ..., C]``."""
    if images.dim() != 4:
        raise ValueError(f"make_grid: expected [B, C, H, W], got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    ncol = nrow or math.ceil(math.sqrt(b))
    nrows = math.ceil(b / ncol)
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if scale > 1:
        x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    fill = int(round((background + 1) * 127.5))
    grid = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), fill, dtype=torch.uint8)
    for i in range(b):
        r, col = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = x[i]
    return grid.permute(1, 2, 0).contiguous()


def save_grid(images: torch.Tensor, path: str, nrow: Optional[int] = None, pad: int = 1, scale: int = 4) -> str:
    """Write images [B, C, H, W] in [-1, 1] as one PNG grid; returns ``path``."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - the `train` extra installs it
        raise ImportError("writing image grids needs Pillow: pip install 'fastgan-kernels[train]'") from exc
    import os

    grid = make_grid(images, nrow, pad, scale)
    array = grid[:, :, 0] if grid.shape[2] == 1 else grid  # 2-D uint8 -> "L", HxWx3 -> "RGB"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    Image.fromarray(array.numpy()).save(path)
    return path

"""Training data: sklearn's bundled digits, a folder of images, and resumable (distributed) batching.

Images come out as float tensors ``[C, S, S]`` in [-1, 1] (the generator's Tanh range) with an
int64 class label.

Batching is a pure function of (seed, epoch, position): every epoch's order is a
``DistributedSampler`` permutation seeded with ``seed`` and ``set_epoch(epoch)`` -- also with
one process, where it is simply the rank-0-of-1 sampler -- so a run resumed at step t reads
exactly the batches the uninterrupted run would have read (the batch sampler skips the
epoch's first batches without loading them), and each rank of a DDP job reads a disjoint
shard.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, TensorDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _resize(images: torch.Tensor, img_size: int) -> torch.Tensor:
    if images.shape[-1] == img_size and images.shape[-2] == img_size:
        return images
    return F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False,
                         antialias=img_size < images.shape[-1]).clamp_(-1.0, 1.0)


def digits_tensors(img_size: int = 8, classes: Sequence[int] = (), channels: int = 1):
    """sklearn's bundled handwritten digits (1797 images, 8x8, values 0..16; no download).

    Returns ``(images [N, channels, S, S] in [-1, 1], labels [N] int64)``; ``classes`` keeps
    only those labels (e.g. a subset for transfer learning). Other sizes are bilinear resizes.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - the `train` extra installs it
        raise ImportError("the digits dataset needs scikit-learn: pip install 'fastgan-kernels[train]'") from exc
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    if classes:
        keep = torch.isin(labels, torch.as_tensor(list(classes), dtype=torch.int64))
        if not keep.any():
            raise ValueError(f"digits: no image has a label in {list(classes)} (labels are 0..9)")
        images, labels = images[keep], labels[keep]
    images = _resize(images, img_size)
    if channels != 1:
        images = images.expand(-1, channels, -1, -1).contiguous()
    return images, labels


def digits_dataset(img_size: int = 8, classes: Sequence[int] = (), channels: int = 1) -> TensorDataset:
    return TensorDataset(*digits_tensors(img_size, classes, channels))


class ImageFolder(Dataset):
    """The user's own images: every image file under ``root``; a subfolder name is its class.

    ``root/cat/1.png, root/dog/2.png`` -> classes ["cat", "dog"] (sorted); files directly in
    ``root`` get class 0. Each image is converted to grey (``channels=1``) or RGB, resized
    (shorter side, then centre crop) to ``img_size`` and scaled to [-1, 1]. Images are decoded
    on access, so large folders need no memory up front.
    """

    def __init__(self, root: str, img_size: int = 8, channels: int = 1, classes: Sequence[int] = ()):
        if not os.path.isdir(root):
            raise ValueError(f"ImageFolder: {root!r} is not a directory")
        if channels not in (1, 3):
            raise ValueError(f"ImageFolder: channels must be 1 or 3, got {channels}")
        self.root, self.img_size, self.channels = root, img_size, channels
        subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.class_names = subdirs or ["."]
        files: list[tuple[str, int]] = []
        for label, name in enumerate(self.class_names):
            walk = os.walk(os.path.join(root, name)) if subdirs else [(root, [], os.listdir(root))]
            for dirpath, _, names in sorted(walk):
                files += [(os.path.join(dirpath, n), label) for n in sorted(names)
                          if n.lower().endswith(IMAGE_SUFFIXES)]
        if classes:
            files = [(p, l) for p, l in files if l in set(classes)]
        if not files:
            raise ValueError(f"ImageFolder: no images ({', '.join(IMAGE_SUFFIXES)}) under {root!r}")
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.files[index]
        with Image.open(path) as img:
            img = img.convert("L" if self.channels == 1 else "RGB")
            w, h = img.size
            scale = self.img_size / min(w, h)
            img = img.resize((max(self.img_size, round(w * scale)), max(self.img_size, round(h * scale))),
                             Image.BICUBIC)
            w, h = img.size
            left, top = (w - self.img_size) // 2, (h - self.img_size) // 2
            img = img.crop((left, top, left + self.img_size, top + self.img_size))
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
        x = data.view(self.img_size, self.img_size, self.channels).permute(2, 0, 1).float() / 127.5 - 1.0
        return x, torch.tensor(label, dtype=torch.int64)


def make_dataset(dataset: str, img_size: int, channels: int = 1, classes: Sequence[int] = ()) -> Dataset:
    """'digits' or a folder path -> a Dataset of ``(image, label)``."""
    if dataset == "digits":
        return digits_dataset(img_size, classes, channels)
    return ImageFolder(dataset, img_size, channels, classes)


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Batches of indices for steps ``start_step, start_step + 1, ...`` forever, rank by rank.

    Step t is batch ``t % per_epoch`` of epoch ``t // per_epoch`` of a ``DistributedSampler``
    (seeded with ``seed``, ``set_epoch(epoch)``, ``drop_last=True``), so the sequence depends on
    (seed, rank, world size) only, never on where a run was interrupted.
    """

    def __init__(self, dataset_len: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0):
        self.sampler = DistributedSampler(range(dataset_len), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"batch_size {batch_size} is larger than this rank's share of the dataset "
                             f"({len(self.sampler)} of {dataset_len} images over {world_size} process(es))")
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            epoch, skip = divmod(step, self.per_epoch)
            self.sampler.set_epoch(epoch)
            for i, batch in enumerate(BatchSampler(self.sampler, self.batch_size, drop_last=True)):
                if i >= skip:
                    yield batch
                    step += 1

    def __len__(self) -> int:  # DataLoader asks; the stream is endless
        return 2 ** 62


def batch_stream(dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start_micro_batch: int = 0, num_workers: int = 0, device: Optional[torch.device] = None):
    """An endless iterator of ``(images, labels)`` micro-batches, starting at ``start_micro_batch``."""
    sampler = ResumableBatchSampler(len(dataset), batch_size, seed, rank, world_size, start_micro_batch)
    pin = device is not None and torch.device(device).type == "cuda"
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin,
                        persistent_workers=num_workers > 0)
    for images, labels in loader:
        if device is not None:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        yield images, labels

"""GAN training on the fast layers: ``train(TrainConfig(...))`` or ``fastgan-kernels train``.

Modules: ``config`` (every option), ``data`` (digits, image folders, resumable/distributed
batches), ``augment`` (DiffAugment-style), ``loop`` (the adversarial updates), ``trainer``
(a run: set-up, loop, checkpoints, logs), ``amp``, ``checkpoint`` (atomic), ``logging``
(CSV / TensorBoard), ``transfer``, ``compress`` (BSR export, int8, the compressed format),
``distributed`` (DDP via torchrun), ``quality`` (MMD, classifier confidence), ``speed``
(fused vs eager step time), ``grid`` (image grids), ``cli``.
"""
from .augment import DiffAugment
from .checkpoint import atomic_save, load_checkpoint
from .compress import build_generator, compress_generator, export_bsr, save_compressed
from .config import TrainConfig
from .data import ImageFolder, digits_dataset, digits_tensors
from .grid import make_grid, sample_images, save_grid
from .quality import Quality, QualityMeter
from .speed import compare_step_time
from .trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "train", "Trainer", "TrainResult", "DiffAugment", "atomic_save", "load_checkpoint",
           "build_generator", "compress_generator", "export_bsr", "save_compressed", "ImageFolder",
           "digits_dataset", "digits_tensors", "make_grid", "sample_images", "save_grid", "Quality", "QualityMeter",
           "compare_step_time"]

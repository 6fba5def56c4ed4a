"""The README's transfer recipe, briefly: a base GAN on every digit, then fine-tuned onto two classes with
the first generator layer frozen and 90% gradual block pruning. Every chosen class must appear among
the samples (no collapse onto one digit) and the MMD to the chosen classes' real digits must drop.

Bounded like tests/test_train_quality.py (one intra-op thread; the learning rate 1e-3 instead of the
2e-4 default only to get there in a test's time): base 600 steps, fine-tune 400 steps. `pytest -s`
prints the figures the README quotes.
"""
import pytest
import torch

from fastgan_kernels.nn import BlockSparseLinear
from fastgan_kernels.train import TrainConfig, train
from fastgan_kernels.train.data import digits_tensors
from fastgan_kernels.train.grid import sample_images
from fastgan_kernels.train.quality import QualityMeter, _as_digits, digit_classifier

from conftest import torch_threads

CLASSES = (0, 1)
COMMON = dict(lr_g=1e-3, lr_d=1e-3, batch_size=64, seed=0, log="none", ckpt_every=0, progress=False)


def _classes_seen(g, n=256) -> dict[int, int]:
    """Confident (p >= 0.9) classifier votes per digit over n samples."""
    images, _ = sample_images(g, n, seed=7)
    with torch.no_grad():
        probs = digit_classifier()(_as_digits(images)).softmax(1)
    conf, pred = probs.max(1)
    votes = torch.bincount(pred[conf >= 0.9], minlength=10)
    return {d: int(votes[d]) for d in range(10) if votes[d]}


@pytest.mark.slow
def test_fine_tune_onto_two_classes_keeps_both_and_gets_closer_to_them(tmp_path):
    with torch_threads(1):
        base = train(TrainConfig(steps=600, out_dir=str(tmp_path / "base"), **COMMON))
        real, _ = digits_tensors(8, CLASSES)
        meter = QualityMeter(real, n=256)
        before = meter.evaluate(base.generator)
        result = train(TrainConfig(steps=400, out_dir=str(tmp_path / "ft"), init_from=base.checkpoint,
                                   freeze_g_layers=1, classes=CLASSES, prune_sparsity=0.9, prune_block=(16, 16),
                                   **COMMON))
        after = meter.evaluate(result.generator)
        seen = _classes_seen(result.generator)
    layers = {n: m for n, m in result.generator.named_modules() if isinstance(m, BlockSparseLinear)}
    sparsity = {n: round(m.sparsity, 3) for n, m in layers.items()}
    share = {d: v / max(sum(seen.values()), 1) for d, v in seen.items()}
    print(f"\n[transfer] base vs digits {CLASSES}: {before}\n[transfer] fine-tuned: {after}"
          f"\n[transfer] MMD^2 {before.mmd:.3f} -> {after.mmd:.3f}; confident votes per digit {seen}; "
          f"sparsity per layer {sparsity}")
    assert sparsity["net.0"] == 0.0  # frozen: left dense
    assert sparsity["net.2"] >= 0.89 and sparsity["net.4"] >= 0.89
    for c in CLASSES:
        assert share.get(c, 0.0) >= 0.1, (c, seen)
    assert after.mmd < before.mmd, (before, after)

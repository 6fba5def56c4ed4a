"""Training data (digits, image folders, resumable distributed batches) and DiffAugment-style augmentation."""
import pytest
import torch

from fastgan_kernels.train import DiffAugment, ImageFolder, digits_tensors
from fastgan_kernels.train.augment import cutout, translation
from fastgan_kernels.train.data import ResumableBatchSampler


def test_digits_are_scaled_to_tanh_range_and_filter_by_class():
    x, y = digits_tensors(8)
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert x.min() == -1.0 and x.max() == 1.0
    sub, labels = digits_tensors(16, classes=(0, 1))
    assert sub.shape[1:] == (1, 16, 16) and set(labels.tolist()) == {0, 1} and sub.abs().max() <= 1


def test_image_folder_classes_resize_and_range(tmp_path):
    from PIL import Image

    for cls, value in (("a", 0), ("b", 255)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 12), (value, value, value)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    ds = ImageFolder(str(tmp_path), img_size=8, channels=1)
    assert len(ds) == 6 and ds.class_names == ["a", "b"]
    x, y = ds[0]
    assert x.shape == (1, 8, 8) and y.item() == 0 and torch.allclose(x, torch.full_like(x, -1.0))
    x, y = ds[5]
    assert y.item() == 1 and torch.allclose(x, torch.ones_like(x))
    assert ImageFolder(str(tmp_path), 8, 3)[0][0].shape == (3, 8, 8)
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(str(tmp_path / "a"), 8, classes=(5,))


def test_batches_resume_exactly_and_ranks_get_disjoint_shards():
    full = iter(ResumableBatchSampler(100, 8, seed=3))
    expected = [next(full) for _ in range(30)]  # 12 batches per epoch: crosses two epoch boundaries
    resumed = iter(ResumableBatchSampler(100, 8, seed=3, start_step=17))
    assert [next(resumed) for _ in range(13)] == expected[17:]
    r0 = next(iter(ResumableBatchSampler(100, 8, seed=3, rank=0, world_size=2)))
    r1 = next(iter(ResumableBatchSampler(100, 8, seed=3, rank=1, world_size=2)))
    assert not set(r0) & set(r1)
    with pytest.raises(ValueError, match="larger than this rank's share"):
        ResumableBatchSampler(10, 8, seed=0, world_size=2)


def test_augment_shapes_range_and_differentiability():
    aug = DiffAugment("color,translation,cutout")
    x = (torch.rand(6, 3, 8, 8) * 2 - 1).requires_grad_(True)
    out = aug(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    assert torch.autograd.gradcheck(lambda t: DiffAugment("color,translation,cutout")(t, torch.Generator().manual_seed(1)),
                                    (torch.rand(2, 3, 8, 8, dtype=torch.double, requires_grad=True),))


def test_augment_is_reproducible_with_a_generator():
    aug, x = DiffAugment("color,translation,cutout"), torch.randn(4, 1, 8, 8)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_per_batch_mode_applies_one_transform_to_every_image():
    x = torch.randn(1, 1, 8, 8).expand(16, -1, -1, -1)
    same = DiffAugment("color,translation,cutout", per_sample=False)(x, torch.Generator().manual_seed(0))
    assert all(torch.equal(same[0], same[i]) for i in range(16))
    each = DiffAugment("color,translation,cutout", per_sample=True)(x, torch.Generator().manual_seed(0))
    assert not all(torch.equal(each[0], each[i]) for i in range(16))


def test_translation_shifts_by_whole_pixels_with_fill():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    for seed in range(20):
        out = translation(x, 0.25, generator=torch.Generator().manual_seed(seed), fill=-9.0)
        dy, dx = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)
                  if torch.equal(out[0, 0, max(i, 0):4 + min(i, 0), max(j, 0):4 + min(j, 0)],
                                 x[0, 0, max(-i, 0):4 + min(-i, 0), max(-j, 0):4 + min(-j, 0)])][0]
        assert (out == -9.0).sum() == 4 * abs(dy) + 4 * abs(dx) - abs(dy * dx)


def test_cutout_sets_one_square_to_the_fill():
    x = torch.zeros(8, 1, 8, 8)
    out = cutout(x, 0.5, generator=torch.Generator().manual_seed(0), fill=-1.0)
    holes = (out == -1.0).sum(dim=(1, 2, 3))
    assert holes.min() >= 4 and holes.max() <= 16  # a 4x4 square, clipped at the border


def test_unknown_augment_op_is_refused():
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        DiffAugment("color,flip")

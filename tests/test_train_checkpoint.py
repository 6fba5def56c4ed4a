"""Atomic checkpoints (a crash mid-write leaves the old one intact) and exact resume."""
import glob
import os

import pytest
import torch

from fastgan_kernels.train import TrainConfig, atomic_save, load_checkpoint, train
from fastgan_kernels.train import checkpoint as ckpt_mod

SMALL = dict(latent_dim=16, g_hidden=(32, 64), d_hidden=(64, 32), batch_size=16, log="none", progress=False,
             seed=0)


def test_atomic_save_round_trip_leaves_no_temp_files(tmp_path):
    path = str(tmp_path / "sub" / "last.pt")
    atomic_save({"step": 1, "w": torch.arange(3.0)}, path)
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path / "sub") == ["last.pt"]


def test_a_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    atomic_save({"step": 1, "w": torch.ones(1000)}, path)

    def dying_save(obj, f):  # writes half a checkpoint, then the process "dies"
        f.write(b"PK\x03\x04 half a zip file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"step": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(1000))
    assert os.listdir(tmp_path) == ["last.pt"]


def test_a_kill_mid_write_leaves_only_a_stale_temp_that_the_next_save_sweeps(tmp_path):
    path = str(tmp_path / "last.pt")
    atomic_save({"step": 1}, path)
    stale = tmp_path / ".tmp-last.pt.abc123"  # what a SIGKILL between write and rename leaves
    stale.write_bytes(b"truncated")
    assert load_checkpoint(path)["step"] == 1
    atomic_save({"step": 2}, path)
    assert load_checkpoint(path)["step"] == 2 and not stale.exists()


def test_a_direct_torch_save_would_have_lost_the_checkpoint(tmp_path):
    """The failure atomic_save prevents: writing in place truncates the old file first."""
    path = str(tmp_path / "last.pt")
    torch.save({"step": 1}, path)
    with open(path, "wb") as f:  # a crash right after open() + a partial write
        f.write(b"PK")
    with pytest.raises(RuntimeError, match="could not read checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("extra", [dict(), dict(conditional=True, augment="color,translation,cutout", grad_accum=2,
                                                fgsm_eps=0.05, prune_sparsity=0.5, prune_end=4,
                                                prune_frequency=1)],
                         ids=["plain", "conditional-augment-accum-fgsm-prune"])
def test_resume_gives_the_uninterrupted_result(tmp_path, extra):
    cfg = TrainConfig(steps=6, ckpt_every=0, **SMALL, **extra)
    full = train(cfg.replace(out_dir=str(tmp_path / "full")))
    part = train(cfg.replace(out_dir=str(tmp_path / "part"), steps=3))
    assert part.step == 3
    resumed = train(cfg.replace(out_dir=str(tmp_path / "part"), resume="auto", seed=None, lr_g=1.0))  # config from ckpt
    assert resumed.step == 6 and resumed.config.seed == 0 and resumed.config.lr_g == cfg.lr_g
    for model in ("generator", "discriminator"):
        a, b = getattr(full, model).state_dict(), getattr(resumed, model).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{model}.{k}"
    saved = load_checkpoint(str(tmp_path / "part" / "last.pt"))
    assert saved["step"] == 6 and saved["opt_g"]["state"]


def test_periodic_checkpoints_and_auto_resume_without_a_checkpoint(tmp_path):
    result = train(TrainConfig(steps=4, ckpt_every=2, out_dir=str(tmp_path), resume="auto", **SMALL))
    assert result.step == 4 and load_checkpoint(result.checkpoint)["step"] == 4
    assert not glob.glob(str(tmp_path / ".tmp-*"))
    with pytest.raises(FileNotFoundError, match="resume: no checkpoint"):
        train(TrainConfig(steps=1, out_dir=str(tmp_path), resume=str(tmp_path / "nope.pt"), **SMALL))

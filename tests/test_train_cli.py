"""``fastgan-kernels train | generate | convert`` end to end on a handful of steps."""
import json
import os

import pytest
import torch
from PIL import Image

from fastgan_kernels.cli import main
from fastgan_kernels.nn import BlockSparseInt8Linear, BlockSparseLinear
from fastgan_kernels.train import build_generator, load_checkpoint
from fastgan_kernels.train.config import TrainConfig

SMALL = ["--latent-dim", "16", "--g-hidden", "32,64", "--d-hidden", "64,32", "--batch-size", "16", "--no-progress",
         "--seed", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    summary = out / "summary.json"
    assert main(["train", "--steps", "4", "--out-dir", str(out), "--json", str(summary), *SMALL]) == 0
    return out


def test_train_writes_checkpoint_logs_and_summary(trained, capsys):
    state = load_checkpoint(str(trained / "last.pt"))
    assert state["step"] == 4 and state["config"]["g_hidden"] == [32, 64] and state["config"]["fused"] is True
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["step"] == 4 and "loss_d" in summary["last"]
    assert (trained / "scalars.csv").exists() and (trained / "config.json").exists()


def test_generate_writes_an_image_grid(trained, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["generate", "--checkpoint", str(trained / "last.pt"), "--n", "64", "--out", str(out)]) == 0
    img = Image.open(out)
    assert img.size == (8 * (8 * 4 + 1) + 1, 8 * (8 * 4 + 1) + 1) and img.mode == "L"
    assert "wrote" in capsys.readouterr().out


def test_convert_prune_and_int8_then_generate(trained, tmp_path, capsys):
    small = tmp_path / "g_small.pt"
    assert main(["convert", "--checkpoint", str(trained / "last.pt"), "--prune", "0.5", "--quantize", "int8",
                 "--out", str(small)]) == 0
    text = capsys.readouterr().out
    assert "SQNR" in text and "PSNR" in text and "vs the pruned float generator" in text
    g, meta = build_generator(str(small))  # the pruned layers stay sparse in int8
    assert sum(isinstance(m, BlockSparseInt8Linear) for m in g.modules()) == 3
    assert meta["compression"]["prune"]["sparsity"] > 0.4
    assert main(["generate", "--checkpoint", str(small), "--n", "9", "--out", str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (3 * 33 + 1, 3 * 33 + 1)


def test_convert_prune_only_gives_bsr_layers(trained, tmp_path):
    path = tmp_path / "g_bsr.pt"
    assert main(["convert", "--checkpoint", str(trained / "last.pt"), "--prune", "0.5", "--out", str(path)]) == 0
    g, _ = build_generator(str(path))
    layers = [m for m in g.modules() if isinstance(m, BlockSparseLinear)]
    assert len(layers) == 3 and all(m.mode == "bsr" for m in layers)
    assert g(torch.randn(2, 16)).shape == (2, 1, 8, 8)


def test_cli_errors_are_short_messages(trained, tmp_path, capsys):
    assert main(["convert", "--checkpoint", str(trained / "last.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["generate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert main(["train", "--steps", "1", "--out-dir", str(tmp_path), "--augment", "flip", *SMALL]) == 2
    assert "unknown op" in capsys.readouterr().err


def test_every_config_field_has_a_flag():
    from fastgan_kernels.cli import build_parser

    args = build_parser().parse_args(["train", "--eager", "--g-hidden", "8,8", "--no-amp", "--seed", "none"])
    from fastgan_kernels.train.config import from_args

    cfg = from_args(args)
    assert cfg.fused is False and cfg.g_hidden == (8, 8) and cfg.seed is None and cfg.amp is False
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name in TrainConfig.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text, name


def test_resume_from_the_cli_extends_a_run(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--resume", "auto", "--steps", "6", "--out-dir", str(run), "--no-progress"]) == 0
    assert load_checkpoint(str(run / "last.pt"))["step"] == 6
    assert os.path.getsize(run / "scalars.csv") > 0

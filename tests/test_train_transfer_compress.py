"""Transfer learning (init from a checkpoint, frozen layers) and compression in the loop (gradual block
pruning -> BSR export, int8 calibration on latents, the compressed file format)."""
import pytest
import torch

from fastgan_kernels.nn import BlockSparseInt8Linear, BlockSparseLinear, Int8Linear
from fastgan_kernels.train import (TrainConfig, Trainer, build_generator, compress_generator, load_checkpoint,
                                   save_compressed, train)
from fastgan_kernels.train.build import plain_generator
from fastgan_kernels.train.distributed import DistEnv
from fastgan_kernels.train.transfer import freeze_generator_layers

SMALL = dict(latent_dim=16, g_hidden=(32, 64), d_hidden=(64, 32), batch_size=16, log="none", progress=False,
             seed=0, ckpt_every=0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A briefly trained generator/discriminator checkpoint."""
    out = tmp_path_factory.mktemp("source")
    return train(TrainConfig(steps=3, out_dir=str(out), **SMALL)).checkpoint


def test_fine_tune_from_a_checkpoint_with_frozen_layers_and_its_own_lr(tmp_path, source):
    src = load_checkpoint(source)
    cfg = TrainConfig(steps=3, out_dir=str(tmp_path), init_from=source, freeze_g_layers=1, lr_g=1e-3,
                      classes=(0, 1), **dict(SMALL, g_hidden=(999,)))  # architecture comes from the checkpoint
    t = Trainer(cfg, DistEnv())
    assert t.cfg.g_hidden == (32, 64) and t.frozen == ["net.0"]
    for k, v in t.g.state_dict().items():
        assert torch.equal(v, src["generator"][k]), k
    assert not any(p is t.g.net[0].weight for group in t.opt_g.param_groups for p in group["params"])
    assert t.opt_g.param_groups[0]["lr"] == 1e-3
    assert set(t.dataset.tensors[1].tolist()) == {0, 1}
    for _ in range(3):
        t.train_step()
    after = t.g.state_dict()
    assert torch.equal(after["net.0.weight"], src["generator"]["net.0.weight"])
    assert torch.equal(after["net.0.bias"], src["generator"]["net.0.bias"])
    assert not torch.equal(after["net.2.weight"], src["generator"]["net.2.weight"])


def test_pruning_fine_tune_starts_from_a_dense_checkpoint(tmp_path, source):
    src = load_checkpoint(source)
    t = Trainer(TrainConfig(steps=2, out_dir=str(tmp_path), init_from=source, prune_sparsity=0.5, **SMALL), DistEnv())
    layers = [m for m in t.g.modules() if isinstance(m, BlockSparseLinear)]
    assert len(layers) == 3 and all(m.sparsity == 0 for m in layers)
    assert torch.equal(layers[1].dense_weight(), src["generator"]["net.2.weight"])
    t.train_step()


def test_freezing_more_layers_than_exist_is_refused():
    with pytest.raises(ValueError, match="only 3 layers"):
        freeze_generator_layers(plain_generator(TrainConfig(**SMALL).model_dict()), 4)


def test_gradual_pruning_in_the_loop_then_bsr_export(tmp_path):
    arch = dict(SMALL, latent_dim=32, g_hidden=(64, 64))  # every layer has >= 8 blocks of 16x16
    result = train(TrainConfig(steps=8, out_dir=str(tmp_path), prune_sparsity=0.75, prune_end=6, prune_frequency=1,
                               export_int8=True, **arch))
    layers = [m for m in result.generator.modules() if isinstance(m, BlockSparseLinear)]
    assert len(layers) == 3 and all(m.mode == "masked" for m in layers)
    assert all(abs(m.sparsity - 0.75) < 0.06 for m in layers), [m.sparsity for m in layers]
    assert result.last["sparsity"] == 0.75
    g, meta = build_generator(result.exported)
    bsr_layers = [m for m in g.modules() if isinstance(m, BlockSparseLinear)]
    assert len(bsr_layers) == 3 and all(m.mode == "bsr" for m in bsr_layers)
    assert [m.nnz_blocks for m in bsr_layers] == [m.nnz_blocks for m in layers]
    assert meta["compression"]["prune"]["block"] == [16, 16]
    z = torch.randn(5, 32)
    with torch.no_grad():
        torch.testing.assert_close(g(z), result.generator.eval()(z), atol=1e-5, rtol=1e-5)
    # export_int8: int8 layers calibrated on latents, the pruned blocks zero
    q, _ = build_generator(result.exported_int8)
    q_layers = [m for m in q.modules() if isinstance(m, Int8Linear)]
    assert len(q_layers) == 3 and float((q_layers[1].weight_int8 == 0).float().mean()) >= 0.74
    # the training checkpoint keeps the masks, and a dense run can start from it (pruned blocks zero)
    dense = Trainer(TrainConfig(steps=1, out_dir=str(tmp_path / "dense"), init_from=result.checkpoint, **arch),
                    DistEnv())
    w = dense.g.net[2].weight.detach()
    assert torch.equal(w, layers[1].dense_weight().detach())


def test_int8_calibrated_on_latents_saves_and_loads(tmp_path, source):
    blob = load_checkpoint(source)
    model = TrainConfig.from_dict(blob["config"]).model_dict()
    g = plain_generator(model)
    g.load_state_dict(blob["generator"])
    q, info = compress_generator(g, model, int8=True)
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == 3
    assert info["quantize"]["model_sqnr_db"] > 25 and info["psnr_db_vs_uncompressed"] > 25
    path = save_compressed(str(tmp_path / "g_int8.pt"), q, model, info)
    loaded, meta = build_generator(path)
    assert meta["compression"] == {"quantize": {"mode": "static", "observer": "max",
                                                "model_sqnr_db": info["quantize"]["model_sqnr_db"]}}
    z = torch.randn(7, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), q(z))


def test_prune_and_int8_together(tmp_path, source):
    blob = load_checkpoint(source)
    model = TrainConfig.from_dict(blob["config"]).model_dict()
    g = plain_generator(model)
    g.load_state_dict(blob["generator"])
    q, info = compress_generator(g, model, prune_sparsity=0.5, block=(16, 16), int8=True)
    # Pruned then quantised, kept sparse: int8 block-sparse layers (0.5 is above the int8 break-even).
    layers = [m for m in q.modules() if isinstance(m, BlockSparseInt8Linear)]
    assert len(layers) == 3 and info["prune"]["sparsity"] == pytest.approx(0.5, abs=0.05)
    assert all(m.sparsity == pytest.approx(0.5, abs=0.05) for m in layers)
    assert info["psnr_db_vs_pruned"] > info["psnr_db_vs_uncompressed"]
    loaded, _ = build_generator(save_compressed(str(tmp_path / "g.pt"), q, model, info))
    z = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), q(z))


def test_a_training_checkpoint_loads_fused_or_eager(source):
    fused, meta = build_generator(source)
    eager, _ = build_generator(source, fused=False)
    assert meta["step"] == 3 and any(type(m).__name__ == "FusedLinear" for m in fused.modules())
    z = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(fused(z), eager(z), atol=1e-5, rtol=1e-5)

"""BlockSparseInt8Linear and the conversions that make it: quantize() on a pruned model keeps each
BlockSparseLinear sparse (dense int8 below the break-even), compress() does both steps, the
compressed generator file (convert --prune --quantize) round-trips, and state_dict / torch.save do."""
import io

import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels import testing
from fastgan_kernels.convert.prune import INT8_BREAK_EVEN_SPARSITY
from fastgan_kernels.nn import BlockSparseInt8Linear, BlockSparseLinear, Int8Linear
from fastgan_kernels.ops import int8_linear as q8


def mlp(k=64, h=96, n=48):
    return nn.Sequential(nn.Linear(k, h), nn.LeakyReLU(0.2), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, n), nn.Tanh())


def calib(k=64, batches=4):
    return [torch.randn(16, k) for _ in range(batches)]


def test_module_matches_its_float_twin_and_reference():
    sparse = BlockSparseLinear.from_dense(nn.Linear(100, 70), (32, 32), sparsity=0.6, activation="leaky_relu")
    layer = BlockSparseInt8Linear.from_block_sparse(sparse)
    assert layer.nnz_blocks == sparse.nnz_blocks and abs(layer.sparsity - sparse.sparsity) < 1e-9
    x = torch.randn(13, 100)
    xq, xs = q8.reference_quantize_per_token(x)
    ref = q8.reference_int8_linear(xq, xs, layer.bsr_weight().to_dense(), layer.weight_scale, layer.bias, 2, 0.2,
                                   torch.float32, None)
    testing.assert_close(layer(x), ref)
    with torch.no_grad():  # and close to the float layer it came from
        assert fk.metrics.sqnr(sparse(x), layer(x)) > 30
    assert layer(torch.randn(0, 100)).shape == (0, 70)  # an empty batch, as nn.Linear
    assert f"sparsity={sparse.sparsity:.2f}" in repr(layer) and "block=(32, 32)" in repr(layer)
    with pytest.raises(ValueError, match="in_features"):
        layer(torch.randn(3, 99))
    with pytest.raises(ValueError, match="no input_scale"):
        layer(xq)


def test_static_int8_in_and_out():
    sparse = BlockSparseLinear.from_dense(nn.Linear(64, 64), 32, sparsity=0.5, activation="relu")
    layer = BlockSparseInt8Linear.from_block_sparse(sparse, "static", input_scale=0.03, output_scale=0.02)
    x = torch.randn(5, 64)
    y = layer(x)
    assert y.dtype == torch.int8
    xq = q8.reference_quantize_per_tensor(x, torch.tensor([0.03]))
    ref = q8.reference_int8_linear(xq, torch.tensor([0.03]), layer.bsr_weight().to_dense(), layer.weight_scale,
                                   layer.bias, 1, 0.2, torch.int8, torch.tensor([0.02]))
    assert (y.int() - ref.int()).abs().max() <= 1
    assert torch.equal(layer(xq), y)  # an int8 input already quantised with input_scale


def test_quantize_keeps_pruned_layers_sparse_and_dense_below_break_even():
    pruned, _ = fk.prune(mlp(), 0.75, block=(16, 16))
    qmodel, report = fk.quantize(pruned, calibration=calib(), mode="static")
    layers = [m for m in qmodel.modules() if isinstance(m, (BlockSparseInt8Linear, Int8Linear))]
    assert len(layers) == 3 and all(isinstance(m, BlockSparseInt8Linear) for m in layers)
    assert layers[0].int8_output and not layers[-1].int8_output  # static layers chain in int8
    assert "sparse 0.75" in str(report) and report.model_sqnr_db > 25
    low, _ = fk.prune(mlp(), INT8_BREAK_EVEN_SPARSITY["cpu"] / 2, block=(16, 16))
    qlow, _ = fk.quantize(low, calibration=calib(), mode="dynamic")
    assert all(type(m) is not BlockSparseInt8Linear for m in qlow.modules())
    assert sum(type(m) is Int8Linear for m in qlow.modules()) == 3
    qforced, _ = fk.quantize(low, mode="dynamic", sparse="always")
    assert sum(type(m) is BlockSparseInt8Linear for m in qforced.modules()) == 3


def test_compress_reports_both_steps_and_psnr():
    model = mlp()
    batches = calib()
    out, report = fk.compress(model, sparsity=0.75, block=(16, 16), int8="static", calibration=batches)
    assert sum(isinstance(m, BlockSparseInt8Linear) for m in out.modules()) == 3
    text = str(report)
    assert "1. prune" in text and "2. quantize" in text and "vs the pruned float model" in text
    assert report.psnr_db_vs_pruned > 30 and report.psnr_db_vs_pruned > report.psnr_db_vs_unpruned
    assert isinstance(model[0], nn.Linear)  # the original is untouched
    with pytest.raises(ValueError, match="calibration"):
        fk.compress(model, int8="static")
    with pytest.raises(ValueError, match="int8"):
        fk.compress(model, int8="int4")


def test_state_dict_and_torch_save_round_trip():
    out, _ = fk.compress(mlp(), sparsity=0.75, block=(16, 16), int8="static", calibration=calib())
    x = torch.randn(7, 64)
    y = out(x)
    buf = io.BytesIO()
    torch.save(out.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)
    # A fresh skeleton with every block kept: loading resizes it to the saved blocks.
    fresh, _ = fk.quantize(fk.prune(mlp(), 0.0, block=(16, 16))[0], calibration=calib(), mode="static",
                           sparse="always")
    fresh.load_state_dict(state)
    assert torch.equal(fresh(x), y)
    buf = io.BytesIO()
    torch.save(out, buf)  # the whole module (packed weights are derived, not saved)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y)


def test_convert_generator_file_round_trip(tmp_path):
    from fastgan_kernels.train.compress import build_generator, compress_generator, save_compressed
    from fastgan_kernels.train.build import plain_generator

    from fastgan_kernels.train.config import TrainConfig

    model = TrainConfig().replace(latent_dim=16, g_hidden=(64, 128)).model_dict()
    g = plain_generator(model)
    out, info = compress_generator(g, model, prune_sparsity=0.75, block=(16, 16), int8=True, calibration_batches=2)
    assert any(isinstance(m, BlockSparseInt8Linear) for m in out.modules())
    assert "psnr_db_vs_pruned" in info and info["psnr_db_vs_pruned"] > 25
    path = save_compressed(str(tmp_path / "g.pt"), out, model, info)
    loaded, meta = build_generator(path)
    z = torch.randn(5, 16)
    assert torch.equal(loaded.net(z), out.net(z))


def test_static_chain_mixes_dense_and_sparse_int8_layers():
    pruned, _ = fk.prune(mlp(), 0.75, block=(16, 16), skip=["2"])  # the middle layer stays a dense Linear
    batches = calib()
    qmodel, report = fk.quantize(pruned, calibration=batches, mode="static")
    kinds = [type(m) for m in qmodel if isinstance(m, (BlockSparseInt8Linear, Int8Linear))]
    assert kinds == [BlockSparseInt8Linear, Int8Linear, BlockSparseInt8Linear]
    assert qmodel[0].int8_output and qmodel[2].int8_output and not qmodel[4].int8_output  # int8 all along
    with torch.no_grad():
        assert fk.metrics.sqnr(pruned(batches[0]), qmodel(batches[0])) > 25

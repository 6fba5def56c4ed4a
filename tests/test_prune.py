"""prune(), BlockSparseLinear's modes and state_dict, and the gradual pruning schedule."""
import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.convert import CubicSparsitySchedule, GradualPruner
from fastgan_kernels.models import seed_generator, wide_generator
from fastgan_kernels.nn import BlockSparseLinear


def test_prune_reaches_the_target_per_layer_and_reports_it():
    model = seed_generator()
    pruned, report = fk.prune(model, sparsity=0.9, block=(32, 32))
    layers = [m for m in pruned.modules() if isinstance(m, BlockSparseLinear)]
    assert len(layers) == 3 and all(m.mode == "bsr" for m in layers)
    for row, layer in zip(report.layers, layers):
        assert abs(row.sparsity - 0.9) < 0.02
        assert row.blocks_kept == layer.nnz_blocks
        assert row.bytes_after < row.bytes_before / 5
    assert "net.4" in str(report) and report.to_dict()["layers"][0]["name"] == "net.0"


def test_pruned_model_equals_the_masked_dense_model():
    model = seed_generator()
    pruned, _ = fk.prune(model, sparsity=0.75, block=(16, 32))
    dense = nn.Sequential(*[m.to_dense() if isinstance(m, BlockSparseLinear) else m for m in pruned.net])
    z = torch.randn(5, 100)
    with torch.no_grad():
        torch.testing.assert_close(pruned.net(z), dense(z), atol=1e-5, rtol=1e-5)


def test_global_scope_and_skip():
    model = wide_generator()
    pruned, report = fk.prune(model, sparsity=0.8, block=64, scope="global", skip=["net.6"])
    assert report.skipped == ["net.6"] and type(pruned.net[6]) is nn.Linear
    assert abs(report.sparsity - 0.8) < 0.01
    assert all(l.blocks_kept >= 1 for l in report.layers)


def test_prune_keeps_the_strongest_blocks():
    linear = nn.Linear(64, 64)
    with torch.no_grad():
        linear.weight.mul_(0.01)
        linear.weight[16:32, 32:48] = 5.0
    layer = BlockSparseLinear.from_dense(linear, 16, sparsity=0.9375)  # keep 1 of 16 blocks
    assert layer.nnz_blocks == 1 and layer.col_idx.tolist() == [2] and layer.row_ptr.tolist() == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, float("nan")])
def test_bad_sparsity_is_refused(sparsity):
    with pytest.raises(ValueError, match=r"sparsity must be a float in \[0, 1\)"):
        fk.prune(seed_generator(), sparsity=sparsity)


def test_bad_block_and_scope_are_refused():
    with pytest.raises(ValueError, match="powers of two"):
        fk.prune(seed_generator(), block=(24, 32))
    with pytest.raises(ValueError, match="scope"):
        fk.prune(seed_generator(), scope="model")


def test_state_dict_round_trips_in_both_modes():
    layer = BlockSparseLinear.from_dense(nn.Linear(70, 50), (16, 32), sparsity=0.5, activation="tanh")
    x = torch.randn(3, 70)
    expected = layer(x)
    fresh = BlockSparseLinear(70, 50, (16, 32), activation="tanh")
    fresh.load_state_dict(layer.state_dict())          # masked -> bsr
    assert fresh.mode == "bsr"
    torch.testing.assert_close(fresh(x), expected)
    masked = BlockSparseLinear.from_dense(nn.Linear(70, 50), (16, 32), sparsity=0.5, activation="tanh",
                                          mode="masked")
    layer.to_masked()
    masked.load_state_dict(layer.state_dict())
    assert masked.mode == "masked"
    torch.testing.assert_close(masked(x), expected)
    assert "sparsity=0.50" in repr(masked) and "block=(16, 32)" in repr(masked)


def test_masked_mode_gives_pruned_blocks_no_gradient():
    layer = BlockSparseLinear.from_dense(nn.Linear(64, 64), 32, sparsity=0.5, mode="masked")
    layer(torch.randn(8, 64)).sum().backward()
    mask = fk.ops.bsr.expand_mask(layer.block_mask, (64, 64), (32, 32))
    assert (layer.weight.grad[~mask] == 0).all() and (layer.weight.grad[mask] != 0).any()


def test_cubic_schedule():
    s = CubicSparsitySchedule(final=0.9, begin_step=10, end_step=110, frequency=10)
    assert s.sparsity_at(0) == 0.0 and s.sparsity_at(110) == 0.9 and s.sparsity_at(500) == 0.9
    values = [s.sparsity_at(t) for t in range(10, 111)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert s.sparsity_at(60) == pytest.approx(0.9 - 0.9 * 0.5 ** 3)
    assert s.sparsity_at(65) == s.sparsity_at(60)  # held between updates
    with pytest.raises(ValueError):
        CubicSparsitySchedule(final=0.9, begin_step=5, end_step=5)


def test_gradual_pruner_in_a_training_loop():
    model, _ = fk.prune(seed_generator(), sparsity=0.0, block=32, mode="masked")
    pruner = GradualPruner(model, CubicSparsitySchedule(final=0.8, begin_step=0, end_step=6))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    seen = []
    for _ in range(8):
        model(torch.randn(4, 100)).mean().backward()
        opt.step()
        opt.zero_grad()
        seen.append(pruner.step())
    layers = [m for m in model.modules() if isinstance(m, BlockSparseLinear)]
    assert seen[0] == 0.0 and seen[-1] == 0.8
    assert all(abs(m.sparsity - 0.8) < 0.02 for m in layers)
    for m in layers:
        m.to_bsr()
    assert model(torch.randn(2, 100)).shape == (2, 1, 28, 28)

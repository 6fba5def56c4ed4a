"""BatchNorm1d after a Linear: folded in eval mode by fuse / prune / quantize, left alone in training."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.convert.fold import FoldedBatchNorm, fold_batchnorm
from fastgan_kernels.models import bn_generator, with_running_stats
from fastgan_kernels.nn import BlockSparseLinear, FusedLinear, Int8Linear


def _block(affine=True, eps=1e-5, act=None, bias=True):
    model = nn.Sequential(nn.Linear(17, 33, bias=bias), nn.BatchNorm1d(33, eps, affine=affine),
                          act or nn.LeakyReLU(0.2), nn.Linear(33, 5))
    return with_running_stats(model, seed=3)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("eps", [1e-5, 0.8])
@pytest.mark.parametrize("bias", [True, False])
def test_fold_batchnorm_matches_eager(affine, eps, bias):
    model = _block(affine, eps, bias=bias).eval()
    lin, bn = model[0], model[1]
    w, b = fold_batchnorm(lin.weight, lin.bias, bn)
    x = torch.randn(9, 17)
    torch.testing.assert_close(F.linear(x, w, b), bn(lin(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.2, inplace=True), nn.ReLU(), nn.Tanh(), nn.Sigmoid()])
def test_fuse_folds_eval_batchnorm_and_fuses_the_activation(act):
    model = _block(act=act).eval()
    fused = fk.fuse(model)
    assert isinstance(fused[0], FusedLinear) and isinstance(fused[1], FoldedBatchNorm)
    assert isinstance(fused[2], nn.Identity)
    x = torch.randn(16, 17)
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
    # the folded model's state_dict: the Linear's keys (folded values), no BatchNorm entries
    assert set(fused.state_dict()) == {"0.weight", "0.bias", "3.weight", "3.bias"}


def test_bn_generator_every_linear_fused_in_eval():
    g = with_running_stats(bn_generator()).eval()
    fused = fk.fuse(g)
    assert not [n for n, m in fused.named_modules() if type(m) is nn.Linear]
    assert sum(isinstance(m, FusedLinear) for m in fused.modules()) == 5
    z = torch.randn(64, 100)
    torch.testing.assert_close(fused(z), g(z), atol=1e-4, rtol=0)


def test_prune_and_quantize_fold_through_the_same_finder():
    g = with_running_stats(bn_generator()).eval()
    z = torch.randn(64, 100)
    pruned, _ = fk.prune(g, sparsity=0.0, block=(16, 16))  # keeps every block: equal to eager
    assert sum(isinstance(m, BlockSparseLinear) for m in pruned.modules()) == 5
    assert sum(isinstance(m, FoldedBatchNorm) for m in pruned.modules()) == 3
    torch.testing.assert_close(pruned(z), g(z), atol=1e-4, rtol=0)
    q, report = fk.quantize(g, calibration=[z], mode="dynamic")
    assert sum(isinstance(m, Int8Linear) for m in q.modules()) == 5
    assert report.model_sqnr_db > 25


def _grads(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_training_mode_batchnorm_stays_and_matches_eager():
    model = _block().train()
    fused = fk.fuse(model)
    assert type(fused[1]) is nn.BatchNorm1d  # batch statistics: not folded
    assert list(fused.state_dict()) == list(model.state_dict())
    x = torch.randn(16, 17)
    out_a, grads_a = _grads(model, x)
    out_b, grads_b = _grads(fused, x)
    torch.testing.assert_close(out_b, out_a)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused[1].running_mean, model[1].running_mean)  # both updated the same way
    # the fused training model loads and saves the original checkpoints
    fused.load_state_dict(model.state_dict())
    nn.Sequential(*[m for m in _block()]).load_state_dict(fused.state_dict())


def test_bn_generator_training_prune_keeps_batchnorm():
    g = bn_generator().train()
    pruned, _ = fk.prune(g, sparsity=0.5, block=(16, 16), mode="masked")
    assert sum(type(m) is nn.BatchNorm1d for m in pruned.modules()) == 3
    z = torch.randn(8, 100)
    pruned(z).sum().backward()


def test_folded_model_warns_when_switched_to_training():
    fused = fk.fuse(_block().eval())
    with pytest.warns(UserWarning, match="folded"):
        fused.train()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused.eval()


def test_shared_weight_is_not_folded():
    model = _block().eval()
    tied = nn.Sequential(model, nn.Linear(17, 33))
    tied[1].weight = model[0].weight
    explanation = fk.explain(tied, verbose=False)
    row = next(d for d in explanation.decisions if d.name == "0.0")
    assert row.became is None and "shared" in row.reason


class _FunctionalBN(nn.Module):
    """BatchNorm and the activation written in forward (found through torch.fx)."""

    def __init__(self):
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(12, 24), nn.BatchNorm1d(24), nn.Linear(24, 3)

    def forward(self, x):
        return self.out(F.leaky_relu(self.bn(self.fc(x)), 0.2))


def test_fx_folds_batchnorm_in_a_custom_forward():
    model = with_running_stats(_FunctionalBN()).eval()
    fused = fk.fuse(model)
    assert isinstance(fused.fc, FusedLinear) and isinstance(fused.bn, FoldedBatchNorm)
    x = torch.randn(7, 12)
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
    train_fused = fk.fuse(with_running_stats(_FunctionalBN()).train())
    assert type(train_fused.fc) is nn.Linear and type(train_fused.bn) is nn.BatchNorm1d

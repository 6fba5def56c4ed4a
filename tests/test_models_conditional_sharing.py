"""The conditional MLP GAN and weight tying between equal-shape layers."""
import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.models import (ConditionalMLPDiscriminator, ConditionalMLPGenerator, MLPGenerator,
                                    count_parameters, shared_groups, tie_equal_shapes)
from fastgan_kernels.nn import FusedLinear


def test_conditional_generator_and_discriminator_shapes_and_label_effect():
    g = ConditionalMLPGenerator(num_classes=10, latent_dim=16, hidden=(32, 64), img_size=8, embed_dim=4)
    d = ConditionalMLPDiscriminator(num_classes=10, img_size=8, hidden=(64, 32), embed_dim=4)
    z, y = torch.randn(5, 16), torch.arange(5)
    img = g(z, y)
    assert img.shape == (5, 1, 8, 8) and img.abs().max() <= 1
    assert g.net[0].in_features == 16 + 4 and d.net[0].in_features == 64 + 4
    assert not torch.allclose(g(z, y), g(z, (y + 1) % 10))  # the label changes the image
    logits = d.logits(img, y)
    assert logits.shape == (5, 1)
    torch.testing.assert_close(d(img, y), torch.sigmoid(logits))


def test_conditional_models_fuse_and_keep_their_logits():
    g = ConditionalMLPGenerator(10, 16, (32, 64), 8)
    d = ConditionalMLPDiscriminator(10, 8, 1, (64, 32))
    z, y = torch.randn(3, 16), torch.tensor([1, 2, 3])
    ref_img, ref_logits = g(z, y), d.logits(g(z, y), y)
    fg = fk.fuse(g, backend="reference")
    d.net = fk.fuse(d.net, backend="reference", inplace=True)
    assert sum(isinstance(m, FusedLinear) for m in fg.modules()) == 3
    assert isinstance(d.net[-1], nn.Linear) and not isinstance(d.net[-1], FusedLinear)
    torch.testing.assert_close(fg(z, y), ref_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d.logits(fg(z, y), y), ref_logits, atol=1e-5, rtol=1e-5)


def test_conditional_discriminator_folds_its_sigmoid_for_inference():
    d = ConditionalMLPDiscriminator(10, 8, 1, (64, 32))
    img, y = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 3, 5, 9])
    inference = d.fused_for_inference(backend="reference")
    last = inference.body[len(inference.body) - 1]
    assert isinstance(last, FusedLinear) and last.activation == "sigmoid" and last.weight is d.net[-1].weight
    torch.testing.assert_close(inference(img, y), d(img, y), atol=1e-6, rtol=1e-5)


def test_conditional_rejects_bad_labels():
    g = ConditionalMLPGenerator(10, 16, (32,), 8)
    with pytest.raises(TypeError, match="labels must be an int64"):
        g(torch.randn(2, 16), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        g(torch.randn(2, 16), torch.tensor([0, 1, 2]))


def test_tying_saves_the_reported_parameters_and_state_dict_keys_stay():
    g = MLPGenerator(16, (32, 32, 32), 8)
    keys = list(g.state_dict())
    report = tie_equal_shapes(g)
    assert report.groups == [["net.2", "net.4"]]
    assert report.saved == 32 * 32 == report.params_before - report.params_after
    assert count_parameters(g) == report.params_after and "saved 1,024" in str(report)
    assert g.net[2].weight is g.net[4].weight and g.net[2].bias is not g.net[4].bias
    assert list(g.state_dict()) == keys
    assert shared_groups(g) == [["net.2.weight", "net.4.weight"]]
    both = tie_equal_shapes(MLPGenerator(16, (32, 32, 32), 8), tie_bias=True)
    assert both.saved == 32 * 32 + 32


def test_tied_gradient_is_the_sum_over_uses_and_the_optimiser_steps_it_once():
    torch.manual_seed(0)
    untied = MLPGenerator(16, (32, 32, 32), 8)
    with torch.no_grad():
        untied.net[4].weight.copy_(untied.net[2].weight)
    tied = MLPGenerator(16, (32, 32, 32), 8)
    tied.load_state_dict(untied.state_dict())
    tie_equal_shapes(tied)
    z = torch.randn(6, 16)
    untied(z).square().sum().backward()
    tied(z).square().sum().backward()
    torch.testing.assert_close(tied.net[2].weight.grad, untied.net[2].weight.grad + untied.net[4].weight.grad)
    opt = torch.optim.Adam(tied.parameters(), lr=1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(tied.parameters())) == 7


def test_ties_survive_fuse():
    g = MLPGenerator(16, (32, 32, 32), 8)
    tie_equal_shapes(g)
    fused = fk.fuse(g, backend="reference")  # deep copy keeps the tie
    assert fused.net[2].weight is fused.net[4].weight

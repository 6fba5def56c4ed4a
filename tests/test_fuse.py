"""FusedLinear modules and fuse(): outputs, gradients and state_dict keys match the original."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.models import seed_discriminator, seed_generator, wide_generator
from fastgan_kernels.nn import FusedLinear, FusedLinearLeakyReLU


def _grads(model, x):
    model.zero_grad()
    out = model(x)
    out.square().sum().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


def _assert_same_model(a, b, x):
    assert list(a.state_dict().keys()) == list(b.state_dict().keys())
    out_a, grads_a = _grads(a, x)
    out_b, grads_b = _grads(b, x)
    torch.testing.assert_close(out_b, out_a, atol=1e-5, rtol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=1e-4, rtol=1e-4)


def test_fused_linear_module_matches_linear_and_activation():
    layer = FusedLinearLeakyReLU(17, 9)
    lin, act = layer.to_linear()
    x = torch.randn(5, 17)
    torch.testing.assert_close(layer(x), act(lin(x)))
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert repr(layer) == ("FusedLinearLeakyReLU(in_features=17, out_features=9, bias=True, "
                           "activation=leaky_relu(0.2), backend=auto)")


def test_fused_linear_loads_a_linear_checkpoint():
    lin = nn.Linear(6, 4, bias=False)
    layer = FusedLinear(6, 4, bias=False, activation="tanh")
    layer.load_state_dict(lin.state_dict())
    x = torch.randn(3, 6)
    torch.testing.assert_close(layer(x), torch.tanh(lin(x)))


def test_from_linear_shares_parameters():
    lin = nn.Linear(4, 3)
    layer = FusedLinear.from_linear(lin, "sigmoid")
    assert layer.weight is lin.weight and layer.bias is lin.bias


@pytest.mark.parametrize("kwargs, exc", [(dict(in_features=0, out_features=3), ValueError),
                                         (dict(in_features=3, out_features=3, activation="softplus"), ValueError),
                                         (dict(in_features=3, out_features=3, backend="nope"), ValueError)])
def test_module_rejects_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        FusedLinear(**kwargs)


@pytest.mark.parametrize("factory, shape", [(seed_generator, (8, 100)), (seed_discriminator, (8, 1, 28, 28))])
def test_fuse_sequential_models(factory, shape):
    model = factory()
    fused = fk.fuse(model)
    assert sum(isinstance(m, FusedLinear) for m in fused.modules()) == 3
    assert not any(type(m) is nn.Linear for m in fused.modules())
    _assert_same_model(model, fused, torch.randn(shape))


def test_fuse_handles_inplace_activations_and_keeps_the_original():
    model = nn.Sequential(nn.Linear(10, 20), nn.LeakyReLU(0.1, inplace=True), nn.Linear(20, 20),
                          nn.ReLU(inplace=True), nn.Linear(20, 5), nn.Sigmoid(), nn.Linear(5, 2))
    fused = fk.fuse(model)
    kinds = [type(m).__name__ for m in fused]
    assert kinds == ["FusedLinear", "Identity", "FusedLinear", "Identity", "FusedLinear", "Identity", "Linear"]
    assert [m.activation for m in fused if isinstance(m, FusedLinear)] == ["leaky_relu", "relu", "sigmoid"]
    assert type(model[0]) is nn.Linear  # not inplace by default
    _assert_same_model(model, fused, torch.randn(7, 10))


class FunctionalMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 32), nn.Linear(32, 16), nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)
        self.skip = nn.Linear(12, 32)

    def forward(self, x):
        h = F.leaky_relu(self.fc1(x), 0.2) + self.skip(x)   # skip's output feeds an add: not fusable
        h = torch.tanh(self.fc2(h))
        h = self.fc3(h).sigmoid()
        return self.head(h)


def test_fuse_through_fx():
    model = FunctionalMLP()
    fused = fk.fuse(model)
    assert isinstance(fused, torch.fx.GraphModule)
    assert {n: m.activation for n, m in fused.named_modules() if isinstance(m, FusedLinear)} == {
        "fc1": "leaky_relu", "fc2": "tanh", "fc3": "sigmoid"}
    assert type(fused.skip) is nn.Linear and type(fused.head) is nn.Linear
    _assert_same_model(model, fused, torch.randn(6, 12))


def test_fuse_fx_inside_a_submodule_keeps_the_parent():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = FunctionalMLP()

        def extra(self):
            return "kept"

        def forward(self, x):
            return self.body(x) * 2

    model = Wrapper()
    fused = fk.fuse(model)
    assert isinstance(fused, Wrapper) and fused.extra() == "kept"
    assert isinstance(fused.body, torch.fx.GraphModule)
    _assert_same_model(model, fused, torch.randn(4, 12))


def test_fuse_untraceable_module_warns_and_keeps_it():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: FX cannot trace it
                return torch.tanh(self.fc(x))
            return self.fc(x)

    model = Branchy()
    with pytest.warns(UserWarning, match="could not trace"):
        fused = fk.fuse(model)
    assert type(fused.fc) is nn.Linear


def test_fuse_wide_generator_output_matches():
    model = wide_generator().eval()
    fused = fk.fuse(model)
    z = torch.randn(2, 128)
    with torch.no_grad():
        torch.testing.assert_close(fused(z), model(z), atol=1e-4, rtol=1e-4)

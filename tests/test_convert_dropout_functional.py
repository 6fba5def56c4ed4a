"""Dropout between a Linear and its activation; activations written in forward; explain()'s table."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.activations import Activation
from fastgan_kernels.models import dropout_discriminator
from fastgan_kernels.nn import FusedLinear


def _dropout_block(act):
    return nn.Sequential(nn.Linear(20, 40), nn.Dropout(0.4), act, nn.Linear(40, 6))


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.2), nn.ReLU(inplace=True), nn.Tanh()])
def test_eval_dropout_is_skipped(act):
    model = _dropout_block(act).eval()
    fused = fk.fuse(model)
    assert isinstance(fused[0], FusedLinear) and isinstance(fused[2], nn.Identity)
    x = torch.randn(8, 20)
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.2), nn.ReLU()])
def test_training_dropout_commutes_with_a_positively_homogeneous_activation(act):
    model = _dropout_block(act).train()
    fused = fk.fuse(model)
    assert isinstance(fused[0], FusedLinear) and isinstance(fused[1], nn.Dropout)
    x = torch.randn(32, 20)
    outs, grads = [], []
    for m in (model, fused):
        torch.manual_seed(1234)  # same seed: the same Dropout mask
        m.zero_grad()
        out = m(x)
        out.square().sum().backward()
        outs.append(out)
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-4, rtol=1e-4)
    # the RNG advanced the same way: the next draw agrees too
    torch.manual_seed(99)
    a = model(x)
    torch.manual_seed(99)
    torch.testing.assert_close(fused(x), a, atol=1e-5, rtol=1e-5)


def test_training_dropout_before_tanh_is_not_fused():
    model = _dropout_block(nn.Tanh()).train()
    explanation = fk.explain(model, verbose=False)
    assert explanation.decisions[0].became is None and "does not commute" in explanation.decisions[0].reason


def test_dropout_discriminator_fused_in_eval():
    d = dropout_discriminator().eval()
    fused = fk.fuse(d)
    assert sum(isinstance(m, FusedLinear) for m in fused.modules()) == 3  # the 4th ends the model: no activation
    img, labels = torch.randn(6, 1, 28, 28), torch.randint(10, (6,))
    torch.testing.assert_close(fused(img, labels), d(img, labels), atol=1e-5, rtol=1e-5)
    last = fk.explain(d, verbose=False).decisions[-1]
    assert last.became is None and "not an activation" in last.reason


class _Functional(nn.Module):
    """Activations in forward, around cat / embedding / view, as user code writes them."""

    def __init__(self, acts):
        super().__init__()
        self.acts = acts
        self.embed = nn.Embedding(4, 3)
        self.fcs = nn.ModuleList([nn.Linear(11, 16)] + [nn.Linear(16, 16) for _ in acts[1:]])
        self.head = nn.Linear(16, 2)

    def forward(self, x, labels):
        h = torch.cat([x.view(x.shape[0], -1), self.embed(labels)], 1)
        for fc, act in zip(self.fcs, self.acts):
            h = act(fc(h))
        return self.head(h).view(-1, 1, 2)


FUNCTIONAL = {
    "F.leaky_relu(h, 0.2)": (lambda h: F.leaky_relu(h, 0.2), "leaky_relu(0.2)"),
    "F.leaky_relu(h, negative_slope=0.1, inplace=True)": (
        lambda h: F.leaky_relu(h, negative_slope=0.1, inplace=True), "leaky_relu(0.1)"),
    "torch.tanh(h)": (torch.tanh, "tanh"),
    "h.sigmoid()": (lambda h: h.sigmoid(), "sigmoid"),
    "F.relu(h, inplace=True)": (lambda h: F.relu(h, inplace=True), "relu"),
    "F.relu(h, True)": (lambda h: F.relu(h, True), "relu"),
    "h.relu_()": (lambda h: h.relu_(), "relu"),
    "torch.relu(h)": (torch.relu, "relu"),
}
NEW = {  # activations the kernels may not know yet (added in their own change)
    "F.gelu(h)": (F.gelu, "gelu", "GELU"),
    "F.gelu(h, approximate='tanh')": (lambda h: F.gelu(h, approximate="tanh"), "gelu_tanh", "GELU_TANH"),
    "F.silu(h)": (F.silu, "silu", "SILU"),
    "F.elu(h, 0.5)": (lambda h: F.elu(h, 0.5), "elu(0.5)", "ELU"),
    "torch.nn.functional.elu(h)": (torch.nn.functional.elu, "elu(1)", "ELU"),
}


def _check_functional(fn, expected):
    model = _Functional([fn]).eval()
    fused = fk.fuse(model)
    assert isinstance(fused.fcs[0], FusedLinear)
    decisions = {d.name: d for d in fk.explain(model, verbose=False).decisions}
    assert str(decisions["fcs.0"].act) == expected
    x, labels = torch.randn(5, 2, 4), torch.randint(4, (5,))
    torch.testing.assert_close(fused(x, labels), model(x, labels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("form", list(FUNCTIONAL))
def test_functional_activation_found_through_fx(form):
    _check_functional(*FUNCTIONAL[form])


@pytest.mark.parametrize("form", list(NEW))
def test_new_functional_activations_when_the_kernels_have_them(form):
    fn, expected, code = NEW[form]
    if not hasattr(Activation, code):
        pytest.skip(f"fastgan_kernels.activations has no {code} yet (added with the new activations' kernels)")
    _check_functional(fn, expected)


@pytest.mark.parametrize("module, code", [(nn.GELU(), "GELU"), (nn.SiLU(), "SILU"), (nn.ELU(0.7), "ELU")])
def test_new_activation_modules(module, code):
    model = nn.Sequential(nn.Linear(6, 8), module)
    fused = fk.fuse(model)
    if not hasattr(Activation, code):  # left alone, with the reason
        assert type(fused[0]) is nn.Linear
        assert "not an activation" in fk.explain(model, verbose=False).decisions[0].reason
        pytest.skip(f"fastgan_kernels.activations has no {code} yet")
    assert isinstance(fused[0], FusedLinear)
    x = torch.randn(3, 6)
    torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)


class _Twice(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.branch = nn.Linear(8, 8)
        self.wide = nn.Linear(8, 8, dtype=torch.float64)

    def forward(self, x):
        h = torch.relu(self.shared(torch.relu(self.shared(x))))  # the same module called twice
        b = self.branch(h)
        y = torch.tanh(b) + b  # output used twice
        return torch.relu(self.wide(y.double()))


def test_explain_gives_the_reasons():
    explanation = fk.explain(_Twice(), verbose=False)
    reasons = {d.name: d.reason for d in explanation.decisions}
    assert "called 2 times" in reasons["shared"]
    assert "used 2 times" in reasons["branch"]
    assert "unsupported dtype float64" in reasons["wide"]
    assert not explanation.converted
    text = str(explanation)
    assert "fuse: 0 of 3 Linear layers converted" in text and "shared" in text
    assert fk.explain(_Twice(), "prune", verbose=False).decisions[0].became is not None  # prune converts it alone
    x = torch.randn(4, 8)
    model = _Twice()
    torch.testing.assert_close(fk.fuse(model)(x), model(x))


def test_explain_prints_and_converters_log(capsys, caplog):
    d = dropout_discriminator().eval()
    fk.explain(d)
    printed = capsys.readouterr().out
    assert "FusedLinear" in printed and "Dropout model.3" in printed
    with caplog.at_level(logging.INFO, logger="fastgan_kernels.convert"):
        fk.fuse(d)
    assert "fuse: 3 of 4 Linear layers converted" in caplog.text
    fk.fuse(d, verbose=True)
    assert "fuse: 3 of 4" in capsys.readouterr().out
    with pytest.raises(ValueError, match="converter"):
        fk.explain(d, "compile")


class _ModeDropout(nn.Module):
    """Dropout written the functional way, its mode read from self.training (and one always-on call)."""

    def __init__(self, mc: bool = False):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(20, 40), nn.Linear(40, 6)
        self.mc = mc

    def forward(self, x):
        h = F.dropout(F.leaky_relu(self.fc1(x), 0.2), 0.3, self.training)
        if self.mc:  # Monte-Carlo dropout: on in eval too
            h = F.dropout(h, 0.1, training=True)
        return self.fc2(h)


@pytest.mark.parametrize("converted_in", ["eval", "train"])
def test_functional_dropout_follows_the_mode_after_conversion(converted_in):
    """torch.fx freezes self.training at trace time; the converted model still drops in train() (the same
    mask as eager for the same seed) and not in eval(), whichever mode it was converted in."""
    model = _ModeDropout()
    model.train(converted_in == "train")
    fused = fk.fuse(model)
    assert isinstance(fused.fc1, FusedLinear)
    assert [type(m) for n, m in fused.named_children() if n.startswith("functional_dropout")] == [nn.Dropout]
    assert list(fused.state_dict()) == list(model.state_dict())
    x = torch.randn(16, 20)
    for mode in ("train", "eval", "train"):
        model.train(mode == "train")
        fused.train(mode == "train")
        torch.manual_seed(7)
        expected = model(x)
        torch.manual_seed(7)
        torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-5)
    fused.train()
    assert not torch.equal(fused(x), fused(x))  # dropping


def test_constant_training_flag_stays_as_written():
    """F.dropout(h, p, training=True) does not depend on the mode: it keeps dropping in eval."""
    model = _ModeDropout(mc=True).eval()
    fused = fk.fuse(model)
    assert len([n for n, _ in fused.named_children() if n.startswith("functional_dropout")]) == 1
    x = torch.randn(16, 20)
    torch.manual_seed(3)
    expected = model(x)
    torch.manual_seed(3)
    torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-5)
    assert not torch.equal(fused(x), fused(x))

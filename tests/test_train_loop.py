"""The adversarial updates: which parameters move, the losses, accumulation, FGSM, AMP, fused vs eager, logs."""
import math
import os

import torch
import torch.nn.functional as F

from fastgan_kernels.models import MLPDiscriminator, MLPGenerator
from fastgan_kernels.nn import FusedLinear
from fastgan_kernels.train import TrainConfig, Trainer, train
from fastgan_kernels.train.distributed import DistEnv
from fastgan_kernels.train.logging import read_csv
from fastgan_kernels.train.loop import AdversarialStep, fgsm_examples
from fastgan_kernels.train.build import Logits

SMALL = dict(latent_dim=16, g_hidden=(32, 64), d_hidden=(64, 32), batch_size=16, log="none", progress=False,
             seed=0, ckpt_every=0)


def _params(m):
    return [p.detach().clone() for p in m.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


class FixedStep(AdversarialStep):
    """Latents from a queue, so two runs can be fed identical noise."""

    def __init__(self, *args, latents=(), **kw):
        super().__init__(*args, **kw)
        self.latents = list(latents)

    def sample(self, n, rng):
        return self.latents.pop(0)[:n], None


def _pair(seed=0):
    torch.manual_seed(seed)
    g, d = MLPGenerator(8, (16,), 8), MLPDiscriminator(8, 1, (16,))
    opt = lambda m: torch.optim.Adam(m.parameters(), lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    return g, d, opt(g), opt(d)


def test_d_update_moves_only_d_and_g_update_moves_only_g(tmp_path):
    t = Trainer(TrainConfig(out_dir=str(tmp_path), **SMALL), DistEnv())
    g0, d0 = _params(t.g), _params(t.d)
    rng = torch.Generator().manual_seed(0)
    t.update.discriminator_update([next(t.stream)], rng)
    g1, d1 = _params(t.g), _params(t.d)
    assert _same(g0, g1) and not _same(d0, d1)
    d_grads = [p.grad.clone() for p in t.d.parameters()]
    t.update.generator_update(1, 16, rng)
    assert _same(d1, _params(t.d)) and not _same(g1, _params(t.g))
    assert all(torch.equal(a, p.grad) for a, p in zip(d_grads, t.d.parameters()))  # G's update left D's grads
    assert all(p.requires_grad for p in t.d.parameters())


def test_losses_are_bce_on_logits_and_the_non_saturating_generator_loss():
    g, d, og, od = _pair()
    z1, z2, real = torch.randn(4, 8), torch.randn(4, 8), torch.rand(4, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        fake = g(z1)
        lr, lf = d.logits(real), d.logits(fake)
        want_d = (F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr))
                  + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf)))
    step = FixedStep(g, d, og, od, latents=[z1, z2])
    stats = step.discriminator_update([(real, torch.zeros(4, dtype=torch.long))], torch.Generator())
    assert math.isclose(stats["loss_d"], float(want_d), rel_tol=1e-5)
    assert math.isclose(stats["d_real"], float(torch.sigmoid(lr).mean()), rel_tol=1e-5)
    with torch.no_grad():
        want_g = -F.logsigmoid(d.logits(g(z2))).mean()  # maximise log D(G(z)), not minimise log(1 - D(G(z)))
    assert math.isclose(step.generator_update(1, 4, torch.Generator())["loss_g"], float(want_g), rel_tol=1e-5)


def test_gradient_accumulation_equals_one_big_batch():
    real, z = torch.rand(16, 1, 8, 8) * 2 - 1, torch.randn(16, 8)
    labels = torch.zeros(16, dtype=torch.long)
    g, d, og, od = _pair()
    FixedStep(g, d, og, od, latents=[z[:8], z[8:]]).discriminator_update(
        [(real[:8], labels[:8]), (real[8:], labels[8:])], torch.Generator())
    g2, d2, og2, od2 = _pair()
    FixedStep(g2, d2, og2, od2, latents=[z]).discriminator_update([(real, labels)], torch.Generator())
    for a, b in zip(d.parameters(), d2.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    FixedStep(g, d, og, od, latents=[z[:8], z[8:]]).generator_update(2, 8, torch.Generator())
    FixedStep(g2, d2, og2, od2, latents=[z]).generator_update(1, 16, torch.Generator())
    for a, b in zip(g.parameters(), g2.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_fgsm_examples_raise_ds_loss_within_eps_and_leave_param_grads_alone():
    _, d, _, _ = _pair()
    real = torch.rand(8, 1, 8, 8) * 1.6 - 0.8
    adv = fgsm_examples(Logits(d), real, None, eps=0.1)
    assert (adv - real).abs().max() <= 0.1 + 1e-6 and adv.abs().max() <= 1
    with torch.no_grad():
        bce = lambda x: F.binary_cross_entropy_with_logits(d.logits(x), torch.ones(8, 1))  # noqa: E731
        assert bce(adv) > bce(real)
    assert all(p.grad is None for p in d.parameters())


def test_fgsm_term_enters_the_discriminator_loss(tmp_path):
    t = Trainer(TrainConfig(out_dir=str(tmp_path), fgsm_eps=0.05, fgsm_weight=0.5, **SMALL), DistEnv())
    stats = t.train_step()
    assert stats["loss_d_fgsm"] > 0 and math.isfinite(stats["loss_d"])


def test_fused_and_eager_training_agree(tmp_path):
    runs = {}
    for fused in (True, False):
        t = Trainer(TrainConfig(out_dir=str(tmp_path), fused=fused, **SMALL), DistEnv())
        assert any(isinstance(m, FusedLinear) for m in t.g.modules()) == fused
        runs[fused] = ([t.train_step() for _ in range(3)], t)
    for a, b in zip(runs[True][0], runs[False][0]):
        for k in a:
            assert math.isclose(a[k], b[k], rel_tol=1e-3, abs_tol=1e-4), k
    for a, b in zip(runs[True][1].g.state_dict().values(), runs[False][1].g.state_dict().values()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=0)


def test_amp_runs_fused_layers_in_bf16_with_fp32_master_weights(tmp_path):
    layer = FusedLinear(8, 4, backend="reference")
    x = torch.randn(3, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        y2 = layer(torch.randn(3, 8, dtype=torch.bfloat16))  # what an autocast nn.Linear upstream hands over
    assert y.dtype == torch.bfloat16 and y2.dtype == torch.bfloat16
    y.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert layer(x).dtype == torch.float32  # outside autocast: the plain layer
    t = Trainer(TrainConfig(out_dir=str(tmp_path), amp=True, **SMALL), DistEnv())
    stats = [t.train_step() for _ in range(2)][-1]
    assert all(math.isfinite(v) for v in stats.values())
    assert all(p.dtype == torch.float32 for p in t.g.parameters())


def test_conditional_fake_labels_come_from_the_chosen_classes(tmp_path):
    t = Trainer(TrainConfig(out_dir=str(tmp_path), conditional=True, classes=(3, 7), **SMALL), DistEnv())
    _, labels = t.update.sample(200, torch.Generator().manual_seed(0))
    assert set(labels.tolist()) == {3, 7}
    assert set(t.dataset.tensors[1].tolist()) == {3, 7}
    assert all(math.isfinite(v) for v in t.train_step().values())


def test_scalars_go_to_csv_and_tensorboard(tmp_path):
    result = train(TrainConfig(out_dir=str(tmp_path), **dict(SMALL, log="both", log_every=2, steps=4)))
    logged = read_csv(os.path.join(str(tmp_path), "scalars.csv"))
    assert [s for s, _ in logged["loss_d"]] == [2, 4] and {"loss_g", "d_real", "d_fake", "step_time_ms"} <= set(logged)
    events = os.listdir(os.path.join(str(tmp_path), "tb"))
    assert any(name.startswith("events.out.tfevents") for name in events)
    assert result.step == 4 and result.checkpoint == os.path.join(str(tmp_path), "last.pt")

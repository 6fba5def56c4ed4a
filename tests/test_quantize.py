"""quantize(): Int8Linear conversion, static int8 chains, fidelity (SQNR / PSNR), state_dict and .to()."""
import math

import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels.metrics import psnr, sqnr
from fastgan_kernels.models import seed_generator
from fastgan_kernels.nn import Int8Linear


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return seed_generator().eval()


def calibration(n=4, batch=64):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 100, generator=g) for _ in range(n)]


@pytest.mark.parametrize("mode, observer", [("dynamic", "max"), ("static", "max"), ("static", "percentile")])
def test_fidelity_per_layer_and_end_to_end(generator, mode, observer):
    qmodel, report = fk.quantize(generator, calibration(), mode=mode, observer=observer)
    assert len(report.layers) == 3
    for layer in report.layers:
        assert layer.sqnr_db >= 30.0, str(report)
    z = torch.randn(256, 100)
    with torch.no_grad():
        reference, got = generator(z), qmodel(z)
    assert got.shape == reference.shape and got.dtype == torch.float32
    assert psnr(reference, got, data_range=2.0) >= 35.0


def test_static_mode_chains_int8_between_layers(generator):
    qmodel, report = fk.quantize(generator, calibration(), mode="static")
    layers = [m for m in qmodel.modules() if isinstance(m, Int8Linear)]
    assert [l.int8_output for l in layers] == [True, True, False]
    assert [r.output for r in report.layers] == ["int8", "int8", "float"]
    assert layers[0].output_scale.item() == layers[1].input_scale.item()
    seen = []
    hooks = [l.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype))) for l in layers]
    qmodel(torch.randn(3, 100))
    for h in hooks:
        h.remove()
    assert seen == [(torch.float32, torch.int8), (torch.int8, torch.int8), (torch.int8, torch.float32)]


def test_state_dict_round_trip_and_to(generator):
    qmodel, _ = fk.quantize(generator, calibration(2), mode="static")
    fresh, _ = fk.quantize(seed_generator(), calibration(2), mode="static")
    fresh.load_state_dict(qmodel.state_dict())
    z = torch.randn(5, 100)
    torch.testing.assert_close(fresh(z), qmodel(z))
    layer = next(m for m in fresh.modules() if isinstance(m, Int8Linear))
    assert layer.weight_int8.dtype == torch.int8 and "net.0.weight_int8" in fresh.state_dict()
    moved = fresh.to(torch.device("cpu"))
    torch.testing.assert_close(moved(z), qmodel(z))


def test_dynamic_module_is_one_fused_call_with_the_two_step_result(monkeypatch):
    from fastgan_kernels.ops import int8_linear as q8

    torch.manual_seed(0)
    layer = Int8Linear.from_linear(nn.Linear(70, 33), "leaky_relu", 0.2)
    w = (layer.weight_int8, layer.weight_scale, layer.bias)
    cases = [torch.randn(17, 140)[:, ::2], torch.randn(2, 5, 70), torch.randn(9, 70).to(torch.bfloat16)]
    expected = [q8.int8_linear(*q8.quantize_per_token(x.reshape(-1, 70)), *w, "leaky_relu", 0.2, x.dtype)
                for x in cases]
    layer_int8_out = Int8Linear.from_linear(nn.Linear(70, 33), "relu", output_scale=0.05)
    x8 = torch.randn(6, 70)
    expected_int8 = q8.int8_linear(*q8.quantize_per_token(x8), layer_int8_out.weight_int8,
                                   layer_int8_out.weight_scale, layer_int8_out.bias, "relu", 0.2, torch.int8,
                                   layer_int8_out.output_scale)

    def two_step(*args, **kwargs):
        raise AssertionError("the dynamic Int8Linear quantised x in a separate call")

    monkeypatch.setattr(q8, "run_quantize_per_token", two_step)
    with torch.no_grad():
        for x, ref in zip(cases, expected):
            y = layer(x)
            assert y.dtype == x.dtype and torch.equal(y, ref.reshape(y.shape))
        assert torch.equal(layer_int8_out(x8), expected_int8)
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.full((2, 70), float("nan")))


def test_int8_linear_module_rejects_bad_configuration():
    with pytest.raises(ValueError, match="needs an input_scale"):
        Int8Linear.from_linear(nn.Linear(8, 4), input_quant="static")
    with pytest.raises(ValueError, match="too large for int32"):
        Int8Linear(200_000, 4)
    with pytest.raises(TypeError, match="linear must be an nn.Linear"):
        Int8Linear.from_linear(nn.Conv1d(3, 3, 1))
    layer = Int8Linear.from_linear(nn.Linear(8, 4))
    with pytest.raises(ValueError, match="no input_scale"):
        layer(torch.zeros(2, 8, dtype=torch.int8))


def test_quantize_argument_errors(generator):
    with pytest.raises(ValueError, match="needs calibration"):
        fk.quantize(generator, mode="static")
    with pytest.raises(ValueError, match="mode"):
        fk.quantize(generator, calibration(1), mode="int4")
    with pytest.raises(ValueError, match="observer"):
        fk.quantize(generator, calibration(1), mode="static", observer="mean")


def test_skip_keeps_float_layers(generator):
    qmodel, report = fk.quantize(generator, calibration(1), skip=["net.4"])
    assert report.skipped == ["net.4"] and type(qmodel.net[4]) is nn.Linear


def test_metrics():
    x = torch.randn(1000)
    assert sqnr(x, x) == math.inf
    assert sqnr(x, x + 0.01 * x) == pytest.approx(40.0, abs=0.01)
    assert psnr(torch.zeros(10), torch.full((10,), 0.2), data_range=2.0) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="shapes differ"):
        sqnr(x, x[:10])

"""compile_generator(): every layer format and mixes, odd widths, batch 0 / 1, threads and schedules,
compile / export, out=, conditional generators, the reshape tail, and the errors."""
import pytest
import torch
from torch import nn

import fastgan_kernels as fk
from fastgan_kernels import _ext
from fastgan_kernels.deploy import NotAChainError
from fastgan_kernels.metrics import psnr
from fastgan_kernels.models import ConditionalMLPGenerator, seed_generator
from fastgan_kernels.nn import BlockSparseLinear, FusedLinear, Int8Linear
from fastgan_kernels.ops import mlp_chain as chain_op

from conftest import torch_threads

pytestmark = pytest.mark.skipif(not _ext.has_kernel("mlp_chain", "CPU"), reason=_ext.REASON or "no mlp_chain kernel")


def _calibration(k, n=4, batch=64):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, k, generator=g) for _ in range(n)]


@pytest.fixture(scope="module")
def seed_g():
    torch.manual_seed(0)
    return seed_generator().eval()


def _variant(model, kind):
    if kind == "plain":
        return model
    if kind == "fused":
        return fk.fuse(model)
    if kind in ("int8_static", "int8_dynamic"):
        return fk.quantize(model, _calibration(model.net[0].in_features), mode=kind.split("_")[1])[0]
    if kind in ("bsr", "masked"):
        return fk.prune(model, sparsity=0.75, block=(16, 16), mode="bsr" if kind == "bsr" else "masked")[0]
    raise AssertionError(kind)


FORMATS = {"plain": "fp32", "fused": "fp32", "int8_static": "int8 static", "int8_dynamic": "int8 dynamic",
           "bsr": "block-sparse fp32", "masked": "block-sparse fp32"}


@pytest.mark.parametrize("kind", list(FORMATS))
@pytest.mark.parametrize("batch", [0, 1, 17, 130])
def test_each_format_matches_its_per_layer_model(seed_g, kind, batch):
    model = _variant(seed_g, kind).eval()
    compiled = fk.compile_generator(model)
    assert compiled.layer_formats == (FORMATS[kind],) * 3
    z = torch.randn(batch, 100)
    got = compiled(z)
    assert got.shape == (batch, 1, 28, 28) and got.dtype == torch.float32
    if batch == 0:  # an empty batch gives an empty output (the per-layer modules refuse one)
        return
    with torch.no_grad():
        want = model(z)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_bf16_stays_close_to_fp32(seed_g):
    compiled = fk.compile_generator(seed_g, dtype=torch.bfloat16)
    assert compiled.layer_formats == ("bf16",) * 3
    z = torch.randn(64, 100)
    with torch.no_grad():
        want = seed_g(z)
    assert psnr(want, compiled(z)) >= 30.0


def _mixed_model():
    """Odd widths, every format in one chain: dynamic int8 -> static int8 (int8 between them) ->
    block-sparse -> static int8 after a float layer (quantised inside the chain) -> fp32 -> bf16."""
    torch.manual_seed(3)
    widths = [37, 100, 17, 64, 45, 33, 1000]
    lins = [nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
    calib = torch.randn(256, 37)
    with torch.no_grad():
        h, scales = calib, []
        for lin in lins:
            scales.append(float(h.abs().max()) / 127)
            h = torch.nn.functional.leaky_relu(lin(h), 0.2)
    layers = [
        Int8Linear.from_linear(lins[0], "leaky_relu", 0.2),
        Int8Linear.from_linear(lins[1], "relu", input_quant="static", input_scale=scales[1]),
        BlockSparseLinear.from_dense(lins[2], block=(16, 16), sparsity=0.5, activation="leaky_relu").to_bsr(),
        Int8Linear.from_linear(lins[3], "tanh", input_quant="static", input_scale=scales[3]),
        FusedLinear.from_linear(lins[4], "sigmoid"),
        lins[5].to(torch.bfloat16),
        nn.Tanh(),
    ]
    return nn.Sequential(*layers).eval()


def test_mixed_formats_and_odd_widths():
    model = _mixed_model()
    compiled = fk.compile_generator(model)
    assert compiled.layer_formats == ("int8 dynamic", "int8 static", "block-sparse fp32", "int8 static", "fp32", "bf16")
    z = torch.randn(23, 37)
    got = compiled(z)
    # The per-layer oracle on the same packed description (the public ops one by one).
    oracle = chain_op.per_layer(z, compiled._tensors(), compiled.meta, compiled.scalars)
    torch.testing.assert_close(got, oracle, atol=1e-2, rtol=1e-2)
    with torch.no_grad():
        h = z
        for m in model:
            h = m(h.to(torch.bfloat16)) if isinstance(m, nn.Linear) else m(h.float())
    assert psnr(h.float(), got) >= 30.0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("schedule", ["columns", "rows"])
@pytest.mark.parametrize("kind", ["fused", "int8_static", "int8_dynamic", "bsr"])
def test_threads_and_schedules_agree(seed_g, threads, schedule, kind):
    model = _variant(seed_g, kind)
    z = torch.randn(150, 100)
    with torch.no_grad():
        want = model(z)
    with torch_threads(threads):
        got = fk.compile_generator(model, schedule=schedule)(z)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)


def test_schedule_choice(seed_g):
    int8 = fk.compile_generator(_variant(seed_g, "int8_static"))
    fp32 = fk.compile_generator(seed_g)
    args = lambda c: (c._tensors(), c.meta, c.scalars)  # noqa: E731
    with torch_threads(2):
        assert chain_op.chain_schedule(*args(int8), batch=8) == "columns"
        assert chain_op.chain_schedule(*args(int8), batch=256) == "rows"  # 0.56 MB of weights fit in L2
        assert chain_op.chain_schedule(*args(fp32), batch=256) == "columns"  # 2.2 MB do not
        assert chain_op.chain_schedule(*args(fp32), batch=256, schedule=2) == "rows"


def test_out_is_written_in_place(seed_g):
    compiled = fk.compile_generator(fk.fuse(seed_g))
    z = torch.randn(5, 100)
    out = torch.empty(5, 1, 28, 28)
    assert compiled(z, out=out) is out
    torch.testing.assert_close(out, compiled(z))
    with pytest.raises(ValueError, match="out must be"):
        compiled(z, out=torch.empty(4, 784))


def test_strided_input_and_tail_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 40), nn.ReLU(), nn.Dropout(0.1), nn.Linear(40, 48), nn.Unflatten(1, (3, 4, 4)))
    model.eval()
    compiled = fk.compile_generator(model)
    z = torch.randn(12, 9).t()  # [9, 12], column stride 9
    with torch.no_grad():
        torch.testing.assert_close(compiled(z), model(z), atol=1e-5, rtol=1e-5)
    assert compiled(z).shape == (9, 3, 4, 4)


def test_conditional_generator():
    torch.manual_seed(0)
    model = ConditionalMLPGenerator(num_classes=10, latent_dim=20, hidden=(64, 96)).eval()
    qmodel = fk.quantize(model.net, _calibration(30), mode="dynamic")[0]
    model.net = qmodel
    compiled = fk.compile_generator(model)
    z, labels = torch.randn(6, 20), torch.randint(0, 10, (6,))
    with torch.no_grad():
        want = model(z, labels)
    got = compiled(z, labels)
    assert got.shape == want.shape == (6, 1, 28, 28)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="needs labels"):
        compiled(z)


def test_one_op_under_compile_and_export(seed_g):
    compiled = fk.compile_generator(fk.quantize(seed_g, _calibration(100), mode="static")[0])
    z = torch.randn(8, 100)
    want = compiled(z)
    torch._dynamo.reset()
    got = torch.compile(compiled, fullgraph=True)(z)
    torch.testing.assert_close(got, want)
    exported = torch.export.export(compiled, (z,))
    calls = [n for n in exported.graph.nodes if n.op == "call_function"]
    chain_calls = [n for n in calls if "mlp_chain" in str(n.target)]
    assert len(chain_calls) == 1, [str(n.target) for n in calls]
    torch.testing.assert_close(exported.module()(z), want)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.fc2(x + self.fc1(x))


@pytest.mark.parametrize("model, match", [
    (nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4)), r"`1` \(BatchNorm1d\)"),
    (_Residual(), "combines the activations"),
    (nn.Sequential(nn.ReLU(), nn.Linear(8, 4)), "does not directly follow"),
    (nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Tanh()), "does not directly follow"),
    (nn.Sequential(FusedLinear(8, 4, activation="relu"), nn.Tanh()), "takes one activation"),
    (nn.Sequential(nn.Linear(8, 4), nn.Linear(5, 4)), "takes 5 features"),
    (nn.Sequential(nn.Identity()), "no linear layer"),
])
def test_bad_models_name_what_breaks_the_chain(model, match):
    with pytest.raises(NotAChainError, match=match):
        fk.compile_generator(model)


def test_inference_only_and_bad_inputs(seed_g):
    compiled = fk.compile_generator(seed_g)
    with pytest.raises(RuntimeError, match="inference only"):
        compiled.train()
    with pytest.raises(RuntimeError, match="requires grad"):
        compiled(torch.randn(2, 100, requires_grad=True))
    with pytest.raises(ValueError, match=r"\[batch, 100\]"):
        compiled(torch.randn(2, 99))
    with pytest.raises(TypeError, match="float32"):
        compiled(torch.randn(2, 100, dtype=torch.float64))
    int8 = fk.compile_generator(_variant(seed_g, "int8_dynamic"))
    z = torch.randn(3, 100)
    z[1, 5] = float("nan")
    with pytest.raises(ValueError, match="layer 0 has NaN or Inf \\(first in row 1\\)"):
        int8(z)


def test_kernel_refuses_a_bad_description(seed_g):
    compiled = fk.compile_generator(seed_g)
    tensors, meta, scalars = compiled._tensors(), list(compiled.meta), compiled.scalars
    z = torch.randn(2, 100)
    with pytest.raises(ValueError, match="layer 1: expected 256 input features"):
        torch.ops.fastgan_ext.mlp_chain(z, tensors, meta[:6] + [0, 512, 255] + meta[9:], scalars, 0)
    with pytest.raises(ValueError, match="layer 0: weight must be"):
        torch.ops.fastgan_ext.mlp_chain(z, [tensors[4]] + tensors[1:], meta, scalars, 0)
    with pytest.raises(ValueError, match="unknown format code 9"):
        torch.ops.fastgan_ext.mlp_chain(z, tensors, [9] + meta[1:], scalars, 0)


def test_cuda_graph_buckets_on_cpu():
    from fastgan_kernels.deploy import cuda_graphs

    assert cuda_graphs.buckets(1) == (1,)
    assert cuda_graphs.buckets(100) == (1, 2, 4, 8, 16, 32, 64, 128)
    assert [cuda_graphs.bucket_for(m, (1, 2, 4, 8)) for m in (1, 3, 8, 9)] == [1, 4, 8, None]
    with pytest.raises(ValueError, match="max_batch"):
        cuda_graphs.buckets(0)

    captured = []

    def fake_capture(run, x_static):  # what capture_cuda returns, without a GPU: replay = run again
        holder = {}

        def replay():
            holder["y"].copy_(run(x_static))
        holder["y"] = run(x_static)
        captured.append(x_static.shape[0])
        return cuda_graphs._Captured(x_static, holder["y"], replay)

    run = lambda x: x * 2 + 1  # noqa: E731
    cache = cuda_graphs.GraphCache(run, width=3, max_batch=8, capture=fake_capture)
    for m in (3, 4, 2, 8, 20, 0):
        x = torch.randn(m, 3)
        torch.testing.assert_close(cache(x), run(x))
    assert captured == [4, 2, 8]  # one capture per bucket, reused; 20 rows run uncaptured
    out = torch.empty(3, 3)
    x = torch.randn(3, 3)
    assert cache(x, out) is out
    torch.testing.assert_close(out, run(x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_replay_matches_per_layer(seed_g):
    compiled = fk.compile_generator(fk.fuse(seed_g)).to("cuda")
    z = torch.randn(5, 100, device="cuda")
    got = compiled(z)
    want = chain_op.per_layer(z, compiled._tensors(), compiled.meta, compiled.scalars).view(5, 1, 28, 28)
    torch.testing.assert_close(got, want)
    assert (8, z.device) in compiled._graphs.graphs


@pytest.mark.parametrize("kind", ["plain", "int8_static", "int8_dynamic"])
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_small_batch_paths_below_avx512(seed_g, kind, batch):
    """The AVX2 small-batch path (chain/dot_avx2.cpp) and the AVX2 int8 GEMM against the per-layer modules
    on the same ISA, reached on AVX-512 machines through the ISA cap."""
    if _ext.max_isa() < _ext.Isa.AVX2:
        pytest.skip("needs AVX2")
    model = _variant(seed_g, kind)
    compiled = fk.compile_generator(model)
    z = torch.randn(batch, 100)
    with torch.no_grad(), _ext.cpu_isa(_ext.Isa.AVX2):
        want = model(z)
    with _ext.cpu_isa(_ext.Isa.AVX2):
        got = compiled(z)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)

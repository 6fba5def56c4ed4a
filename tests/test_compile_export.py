"""The fused generator under torch.compile(fullgraph=True) and torch.export."""
import pytest
import torch

import fastgan_kernels as fk
from fastgan_kernels.models import seed_generator


@pytest.fixture
def models():
    model = seed_generator()
    return model, fk.fuse(model)


def test_compile_fullgraph_forward(models):
    model, fused = models
    compiled = torch.compile(fused, fullgraph=True)
    z = torch.randn(16, 100)
    with torch.no_grad():
        torch.testing.assert_close(compiled(z), model(z), atol=1e-5, rtol=1e-5)


def test_compile_fullgraph_backward(models):
    model, fused = models
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    z = torch.randn(8, 100)
    compiled(z).square().mean().backward()
    model(z).square().mean().backward()
    for (name, p), q in zip(fused.named_parameters(), model.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_export_keeps_the_fused_op(models):
    model, fused = models
    z = torch.randn(4, 100)
    program = torch.export.export(fused, (z,))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "fastgan.fused_linear.default" in targets
    torch.testing.assert_close(program.module()(z), model(z), atol=1e-5, rtol=1e-5)

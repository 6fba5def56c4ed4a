"""converted_models: whole models as public GAN code writes them, eager against ``fastgan_kernels.fuse``.

Cases: the BatchNorm generator (``models.bn_generator``: Linear -> BatchNorm1d(out, 0.8) ->
LeakyReLU(0.2) blocks, 100 -> 128 -> 256 -> 512 -> 1024 -> 784, Tanh) and the conditional
discriminator with Linear -> Dropout(0.4) -> LeakyReLU blocks (``models.dropout_discriminator``),
both in eval mode at batch 64, float32. The BatchNorms carry non-trivial running statistics
(``models.with_running_stats``), as a trained model's do. Providers: the eager model,
torch.compile of it, and ``fuse(model, backend=...)`` (BatchNorm folded, Dropout skipped).

Target (CPU, float32): on the BatchNorm generator every Linear becomes a fastgan layer, the
output is within 1e-4 of eager, and the fused model is >= 1.3x eager in the same run.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch

from ... import testing
from ...convert import explain, fuse
from ...models import bn_generator, dropout_discriminator, with_running_stats
from .. import providers, summary
from ..registry import Case, Provider, Suite
from . import _common

OP = "converted_models"
BATCH = 64
MODELS = {"bn_generator": bn_generator, "dropout_discriminator": dropout_discriminator}
TARGET_MODEL, TARGET_SPEEDUP, TARGET_ERROR = "bn_generator", 1.3, 1e-4
DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32,)}


def _linear_shapes(name: str) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in MODELS[name]().modules() if isinstance(m, torch.nn.Linear)]


def make_case(dims: dict, dtype: torch.dtype, device: str) -> Case:
    m, size = dims["batch"], torch.empty((), dtype=dtype).element_size()
    shapes = _linear_shapes(dims["model"])
    return Case(OP, (("model", dims["model"]), ("batch", m)), dtype, device,
                flops=float(sum(2 * m * k * n for k, n in shapes)),
                bytes=float(sum((m * k + k * n + n + m * n) * size for k, n in shapes)), images=m)


def default_cases(device: str, quick: bool) -> list[Case]:
    return [make_case({"model": name, "batch": BATCH}, dtype, device) for name in MODELS for dtype in DTYPES[device]]


def build_model(name: str):
    """The named model in eval mode with fixed weights and running statistics (the same in every run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20261203)
        model = with_running_stats(MODELS[name]())
    return model.eval().requires_grad_(False)


def make_inputs(case: Case):
    model = build_model(case.dims["model"]).to(device=case.device, dtype=case.dtype)
    gen = torch.Generator().manual_seed(case.dims["batch"])
    b = case.dims["batch"]
    if case.dims["model"] == "bn_generator":
        args = (torch.randn(b, model.latent_dim, generator=gen),)
    else:
        args = (torch.randn(b, 1, 28, 28, generator=gen), torch.randint(10, (b,), generator=gen))
    args = tuple(a.to(case.device, case.dtype) if a.is_floating_point() else a.to(case.device) for a in args)
    return SimpleNamespace(model=model, args=args)


def reference(case: Case, inputs) -> torch.Tensor:
    return copy.deepcopy(inputs.model).float()(*(a.float() if a.is_floating_point() else a for a in inputs.args))


def eager_fn(model, *args):
    return model(*args)


def eager_build(case: Case, inputs):
    return lambda: inputs.model(*inputs.args)


_COMPILED = providers.compiled(eager_fn)


def compiled_build(case: Case, inputs):
    return _COMPILED.build(case, (inputs.model, *inputs.args))


def fastgan_build(case: Case, inputs, backend: str):
    model = fuse(inputs.model, backend=backend)
    return lambda: model(*inputs.args)


def compare(case: Case, out: torch.Tensor, expected: torch.Tensor):
    abs_err, rel_err = testing.max_errors(out, expected)
    return abs_err, rel_err, abs_err <= TARGET_ERROR, {}


def checks(rows, skipped) -> list[dict]:
    """Per model: how many of its Linear layers fuse() converts and each backend's speed-up; the target line
    for the BatchNorm generator on the CPU in float32."""
    out = []
    for (device, dtype), group in _common.group_rows(rows).items():
        for name in MODELS:
            mine = [r for r in group if r.shape.get("model") == name and r.status == "ok"]
            if not mine:
                continue
            found = explain(build_model(name), verbose=False)
            done = f"{len(found.converted)}/{len(found.decisions)} Linear layers converted"
            is_target = name == TARGET_MODEL and device == "cpu" and dtype == "float32"
            what = (f"{name} eval batch {BATCH}, {done}, max err <= {TARGET_ERROR:g}, fused >= {TARGET_SPEEDUP}x eager"
                    if is_target else f"{name} eval batch {BATCH}, {done}")
            fast = [r for r in mine if r.kind == "fastgan"]
            if not fast:
                out.append(_common.not_measured(OP, device, dtype, what, skipped, name) if is_target else
                           summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what, False)
                                               + ": no fastgan backend ran", "info", name=name))
                continue
            for r in fast:
                text = (f": {r.provider} {r.speedup_vs_eager:.2f}x eager"
                        + (f", {r.speedup_vs_compile:.2f}x torch.compile" if r.speedup_vs_compile else "")
                        + f", max err {r.max_abs_err:.2g}")
                if is_target:
                    met = (r.speedup_vs_eager >= TARGET_SPEEDUP and bool(r.correct)
                           and len(found.converted) == len(found.decisions))
                    out.append(summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what)
                                                   + text + f", {summary.verdict(met)}", met, name=name,
                                                   provider=r.provider, measured=r.speedup_vs_eager,
                                                   target=TARGET_SPEEDUP))
                else:
                    out.append(summary.suite_check(OP, device, dtype, _common.head(OP, device, dtype, what, False)
                                                   + text, "info", name=name, provider=r.provider,
                                                   measured=r.speedup_vs_eager))
    return out


SUITE = Suite(
    op=OP,
    description="public-style GAN models (BatchNorm generator, Dropout conditional discriminator), eval, batch 64: "
                "eager vs fastgan_kernels.fuse",
    shape_names=("model", "batch"),
    make_case=make_case,
    default_cases=default_cases,
    make_inputs=make_inputs,
    reference=reference,
    compare=compare,
    providers=[
        Provider("eager", "eager", eager_build, description="the model as written (nn.Linear, BatchNorm1d, Dropout)"),
        Provider(_COMPILED.name, "peer", compiled_build, _COMPILED.skip_reason,
                 description="torch.compile(model, fullgraph=True)"),
        *providers.fastgan_backends(None, "fused_linear_fwd", build=fastgan_build,
                                    kernel_modules={"triton": "fastgan_kernels.triton.fused_linear"}),
    ],
    dtypes=DTYPES,
    notes={"reference": "the eager model in float32",
           "models": "fastgan_kernels.models.bn_generator / dropout_discriminator with with_running_stats(), eval",
           "targets": f"cpu fp32: {TARGET_MODEL}: every Linear converted, max err <= {TARGET_ERROR:g}, "
                      f">= {TARGET_SPEEDUP}x eager"},
    checks=checks,
    timing={"default": {"min_run_time": 0.5, "max_run_time": 3.0}},
)

"""In-process pieces of the service: keys, rate limits, the dynamic batcher, config, the alert rules."""
import asyncio
import os
import re
import shutil
import subprocess

import pytest
import torch

pytest.importorskip("prometheus_client")

from fastgan_kernels.serve.auth import KeyChecker, RateLimiter, hash_key, load_keys, new_key, presented_key  # noqa: E402
from fastgan_kernels.serve.batching import Draining, DynamicBatcher  # noqa: E402
from fastgan_kernels.serve.config import ServeConfig  # noqa: E402
from fastgan_kernels.serve.metrics import ServiceMetrics  # noqa: E402

ALERTS = os.path.join(os.path.dirname(__file__), "..", "fastgan_kernels", "serve", "alerts.yml")


# ----------------------------------------------------------------------------- keys and limits
def test_keys_file_round_trip_and_constant_time_identify(tmp_path):
    key, line = new_key("alice")
    assert line == f"alice:{hash_key(key)}" and key not in line
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\n{line}\nbob:{hash_key('other')}\n")
    checker = KeyChecker(load_keys(str(path)))
    assert checker.identify(key) == "alice" and checker.identify("other") == "bob"
    assert checker.identify(key + "x") is None and checker.identify(None) is None and checker.identify("") is None
    assert presented_key({"authorization": "Bearer abc"}) == "abc" and presented_key({"x-api-key": "k"}) == "k"


@pytest.mark.parametrize("text", ["alice\n", "alice:1234\n", f"a:{'g' * 64}\n", "# only a comment\n"])
def test_malformed_keys_file_names_the_line_not_the_content(tmp_path, text):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_keys(str(path))
    assert "alice" not in str(err.value).split(":", 1)[1] or "no keys" in str(err.value)


def test_rate_limiter_token_bucket():
    now = [0.0]
    rl = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [rl.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert rl.acquire("a") == pytest.approx(0.5)
    assert rl.acquire("b") == 0.0  # each key its own bucket
    now[0] = 0.5
    assert rl.acquire("a") == 0.0 and rl.acquire("a") > 0
    assert RateLimiter(0.0, 0).acquire("x") == 0.0  # off


def test_config_validation_names_the_setting():
    with pytest.raises(ValueError, match="max_batch"):
        ServeConfig("g.pt", max_batch=0).validate()
    with pytest.raises(ValueError, match="ssl_keyfile"):
        ServeConfig("g.pt", ssl_certfile="c.pem").validate()
    assert ServeConfig("g.pt").host == "127.0.0.1"  # loopback unless told otherwise


# ----------------------------------------------------------------------------- batcher
def _double(calls):
    def run(z, labels, fail):
        if fail:
            raise RuntimeError("boom")
        calls.append(int(z.shape[0]))
        return z * 2
    return run


async def _with_batcher(fn, calls, **kw):
    m = ServiceMetrics(8)
    b = DynamicBatcher(_double(calls), metrics=m, **kw)
    b.start()
    try:
        return await fn(b), m
    finally:
        await b.drain()


def test_batcher_gathers_concurrent_requests_and_splits_back():
    calls = []

    async def go(b):
        zs = [torch.full((1, 3), float(i)) for i in range(6)]
        return await asyncio.gather(*(b.submit(z, None) for z in zs)), zs

    (results, zs), m = asyncio.run(_with_batcher(go, calls, max_batch=8, max_wait_ms=50))
    assert calls == [6]  # one model call for the six requests
    for r, z in zip(results, zs):
        assert torch.equal(r.images, z * 2) and r.batch_sizes == [6]
    assert m.batch_size.collect()[0].samples  # observed


def test_batcher_splits_large_requests_and_respects_max_batch():
    calls = []

    async def go(b):
        big = torch.arange(20.0).reshape(20, 1)
        small = torch.ones(3, 1)
        return await asyncio.gather(b.submit(big, None), b.submit(small, None))

    (r_big, r_small), _ = asyncio.run(_with_batcher(go, calls, max_batch=8, max_wait_ms=20))
    assert torch.equal(r_big.images, torch.arange(20.0).reshape(20, 1) * 2) and torch.equal(r_small.images, 2 * torch.ones(3, 1))
    assert max(calls) <= 8 and sum(calls) == 23
    assert r_big.batch_sizes[:2] == [8, 8]


def test_batching_off_runs_each_request_alone():
    calls = []

    async def go(b):
        return await asyncio.gather(*(b.submit(torch.ones(2, 1), None) for _ in range(4)))

    asyncio.run(_with_batcher(go, calls, max_batch=8, max_wait_ms=50, batching=False))
    assert calls == [2, 2, 2, 2]


def test_a_failing_batch_fails_only_its_requests_and_drain_refuses_new_work():
    calls = []

    async def go(b):
        bad = b.submit(torch.ones(1, 1), None, inject_failure=True)
        with pytest.raises(RuntimeError, match="boom"):
            await bad
        ok = await b.submit(torch.ones(2, 1), None)
        await b.drain()
        with pytest.raises(Draining):
            await b.submit(torch.ones(1, 1), None)
        return ok

    ok, _ = asyncio.run(_with_batcher(go, calls, max_batch=4, max_wait_ms=1))
    assert torch.equal(ok.images, 2 * torch.ones(2, 1))


# ----------------------------------------------------------------------------- alert rules
def _alert_rules():
    yaml = pytest.importorskip("yaml")
    with open(ALERTS) as f:
        doc = yaml.safe_load(f)
    assert set(doc) == {"groups"} and doc["groups"]
    rules = []
    for group in doc["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
            assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smhd]", rule["for"])
            rules.append(rule)
    return rules


def test_alert_rules_cover_latency_errors_and_queue_and_parse_as_promql():
    rules = _alert_rules()
    exprs = " ".join(r["expr"] for r in rules)
    assert "histogram_quantile(0.99" in exprs and 'status=~"5.."' in exprs and "queue_depth" in exprs
    try:
        import promql_parser
    except ImportError:  # the dev extra installs it; without it the structural checks above still ran
        promql_parser = None
    for rule in rules:
        if promql_parser is not None:
            promql_parser.parse(rule["expr"])  # raises ValueError on a syntax error
        assert rule["expr"].count("(") == rule["expr"].count(")")
    if promql_parser is not None:
        with pytest.raises(ValueError):
            promql_parser.parse("rate(fastgan_serve_images_total[5m]")  # the check does catch errors


def test_alert_rules_name_only_metrics_the_service_exports():
    exported = set()
    m = ServiceMetrics(32)
    m.request_latency.labels("/v1/generate", "200").observe(0.01)  # labelled series appear once observed
    for family in m.registry.collect():
        for sample in family.samples:
            exported.add(sample.name)
    for rule in _alert_rules():
        for name in re.findall(r"fastgan_serve_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']}: {name} is not a metric the service exports"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Prometheus) is not installed")
def test_alert_rules_pass_promtool():
    out = subprocess.run(["promtool", "check", "rules", ALERTS], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_lone_request_does_not_wait_for_company_that_is_not_coming():
    import time

    calls = []

    async def go(b):
        t = time.perf_counter()
        await b.submit(torch.ones(1, 1), None)
        return time.perf_counter() - t

    alone, _ = asyncio.run(_with_batcher(go, calls, max_batch=8, max_wait_ms=400, arriving=lambda: 0))
    expected, _ = asyncio.run(_with_batcher(go, calls, max_batch=8, max_wait_ms=400, arriving=lambda: 1))
    assert alone < 0.2 and expected >= 0.35  # someone on the way: the batch waits up to max_wait_ms


class _ScriptedGpu:
    """An NVML-like source whose energy counter advances 2 J per reading (see profile.nvml_source.GpuSource)."""

    def __init__(self):
        self.energy = 1000.0

    def name(self):
        return "scripted"

    def total_energy_j(self):
        self.energy += 2.0
        return self.energy

    def power_w(self):
        return 250.0

    def utilization(self):
        return None

    memory = sm_clock_mhz = temperature_c = clock_event_reasons = utilization


def test_gpu_energy_per_image_comes_from_the_monitor_window(tmp_path):
    from fastgan_kernels.profile import GpuMonitor
    from fastgan_kernels.serve.checkpoints import write_training
    from fastgan_kernels.serve.model import BatchRunner, load

    model = load(write_training(str(tmp_path / "g.pt"), "tiny"))
    metrics = ServiceMetrics(8)
    runner = BatchRunner(model, metrics)
    assert runner.monitor is None  # CPU model: no NVML series at all
    assert "gpu_energy" not in metrics.render().decode()
    runner.monitor = GpuMonitor(source=_ScriptedGpu())  # what a CUDA model gets from GpuMonitor.create()
    metrics.enable_gpu()
    out = runner(torch.randn(4, model.latent_dim), None)
    assert out.shape == (4, 1, 8, 8) and runner.monitor.samples == []  # no history kept between batches
    text = metrics.render().decode()
    assert "fastgan_serve_gpu_energy_joules_total 2.0" in text
    assert "fastgan_serve_gpu_energy_per_image_joules_sum 0.5" in text  # 2 J over 4 images


def test_cli_errors_are_short_messages(tmp_path, capsys):
    from fastgan_kernels.cli import main

    assert main(["serve"]) == 2 and "--checkpoint is required" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", "g.pt", "--max-batch", "0"]) == 2
    assert "max_batch must be >= 1" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", "g.pt", "--ray", "--no-batching"]) == 2
    assert "@serve.batch" in capsys.readouterr().err
    assert main(["bench", "--suite", "nope"]) == 2 and "no system suite 'nope'" in capsys.readouterr().err

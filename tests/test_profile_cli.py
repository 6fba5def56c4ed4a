"""The profile command on the CPU: real images/s, CPU figures, and no GPU figures without a GPU."""
import json

import pytest
import torch

from fastgan_kernels import cli
from fastgan_kernels.profile import cpu_stats, models, runner


def test_profile_seed_on_cpu_reports_cpu_side_and_says_why_no_gpu(tmp_path, capsys):
    out, trace = tmp_path / "p.json", tmp_path / "trace.json"
    rc = cli.main(["profile", "--model", "seed", "--batch", "16", "--backend", "eager", "--device", "cpu",
                   "--seconds", "0.3", "--warmup", "0", "--json", str(out), "--trace", str(trace)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "images/s" in text and "peak RSS" in text
    result = json.loads(out.read_text())
    assert result["images"] == result["steps"] * 16 and result["images_per_s"] > 0
    assert result["cpu"]["peak_rss_mib"] > 0 and result["cpu"]["process_cpu_s"] >= 0
    assert result["gpu"]["available"] is False and "no GPU power" in result["gpu"]["reason"]
    assert "images_per_joule" not in result["gpu"]
    assert "energy:" not in text and "power:" not in text and "SM clock" not in text  # no made-up GPU figures
    assert json.loads(trace.read_text())  # a Chrome trace


def test_profile_fused_model_matches_eager():
    eager, _ = models.build("seed", "eager", torch.device("cpu"), torch.float32)
    fused, info = models.build("seed", "reference", torch.device("cpu"), torch.float32)
    z = torch.randn(4, 100)
    torch.testing.assert_close(fused(z), eager(z), atol=1e-5, rtol=1e-5)
    assert info["resolved_backend"] == "reference" and info["variant"]


def test_stand_in_fusion_replaces_linear_activation_pairs():
    base = models.MODELS["seed"]().eval()
    fused = models._stand_in_fuse(base, "reference")
    assert sum(isinstance(m, torch.nn.Linear) for m in fused.modules()) == 0
    z = torch.randn(3, 100)
    torch.testing.assert_close(fused(z), base(z), atol=1e-5, rtol=1e-5)


def test_profile_refuses_backends_that_cannot_run(capsys):
    assert cli.main(["profile", "--backend", "triton", "--device", "cpu", "--seconds", "0.1"]) == 2
    assert "correctness tool" in capsys.readouterr().err
    with pytest.raises(ValueError):
        runner.run(runner.ProfileOptions(batch=0, device="cpu"))


def test_cpu_stats_measure_busy_time():
    stats = cpu_stats.CpuStats().start()
    x = 0
    for i in range(200_000):
        x += i
    r = stats.stop()
    assert r["wall_s"] > 0 and r["process_cpu_s"] > 0 and r["peak_rss_mib"] > 0
    with pytest.raises(RuntimeError):
        cpu_stats.CpuStats().stop()

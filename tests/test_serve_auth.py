"""API keys and rate limits on a real server (a training checkpoint, unconditional generator)."""
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from fastgan_kernels.cli import main  # noqa: E402
from fastgan_kernels.serve.checkpoints import write_training  # noqa: E402
from fastgan_kernels.serve.process import ServerProcess  # noqa: E402

RATE, BURST = 2.0, 3


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    made = {}
    import contextlib
    import io

    for name in ("alice", "bob"):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            assert main(["serve", "--new-key", name]) == 0
        line = out.getvalue().strip()
        key = err.getvalue().strip().rsplit(" ", 1)[-1]
        assert line.startswith(name + ":") and key not in line  # the file holds the hash only
        made[name] = (key, line)
    path = folder / "keys.txt"
    path.write_text("# served keys\n\n" + "\n".join(line for _, line in made.values()) + "\n")
    return str(path), {name: key for name, (key, _) in made.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory, keys):
    ckpt = write_training(str(tmp_path_factory.mktemp("ckpt") / "last.pt"), "tiny", step=3)
    keys_file, _ = keys
    args = ["--checkpoint", ckpt, "--api-keys-file", keys_file, "--rate-limit", str(RATE),
            "--rate-burst", str(BURST), "--access-log", "--log-level", "info"]
    with ServerProcess(args) as srv:
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            yield srv, client


def test_without_a_valid_key_401(server, keys):
    _, c = server
    r = c.post("/v1/generate", json={"n": 1})
    assert r.status_code == 401 and r.json()["error"]["kind"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    assert c.post("/v1/generate", json={"n": 1}, headers={"Authorization": "Bearer fgk_wrong"}).status_code == 401
    assert c.get("/v1/model", headers={"X-API-Key": keys[1]["alice"] + "x"}).status_code == 401
    assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200  # probes stay open


def test_valid_keys_both_header_forms_and_the_training_checkpoint(server, keys):
    _, c = server
    info = c.get("/v1/model", headers={"X-API-Key": keys[1]["bob"]}).json()
    assert info["source_format"] == "fastgan_kernels.train/1" and info["training_step"] == 3
    assert info["conditional"] is False and [layer["format"] for layer in info["layers"]] == ["dense float32"] * 3
    r = c.post("/v1/generate", json={"n": 2, "format": "npy"},
               headers={"Authorization": f"Bearer {keys[1]['alice']}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-npy"
    r = c.post("/v1/generate", json={"n": 2, "labels": [1]}, headers={"X-API-Key": keys[1]["alice"]})
    assert r.status_code == 400 and "not conditional" in r.json()["error"]["message"]


def test_rate_limit_per_key_429(server, keys):
    _, c = server
    bob_key = {"X-API-Key": keys[1]["bob"]}
    codes = [c.post("/v1/generate", json={"n": 1, "format": "npy"}, headers=bob_key).status_code for _ in range(8)]
    assert codes[0] == 200 and 429 in codes, codes
    limited = c.post("/v1/generate", json={"n": 1}, headers=bob_key)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["error"]["message"]
    # Another key has its own bucket.
    assert c.post("/v1/generate", json={"n": 1, "format": "npy"},
                  headers={"X-API-Key": keys[1]["alice"]}).status_code == 200


def test_keys_never_reach_the_log(server, keys):
    srv, c = server
    c.get("/metrics")
    log = srv.log()
    assert "POST /v1/generate" in log  # the access log is on, and it logs request lines only
    for key in keys[1].values():
        assert key not in log

"""Two CPU processes, gloo, DistributedDataParallel: the ranks end with identical parameters.

The processes are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT in the environment, on a free port), without torchrun's extra agent
process, and with a timeout so a hung collective fails the test instead of the suite.
"""
import os
import socket
import subprocess
import sys
import textwrap

import torch

WORKER = textwrap.dedent("""
    import sys, torch
    from fastgan_kernels.train import TrainConfig, train
    out, rank = sys.argv[1], int(sys.argv[2])
    result = train(TrainConfig(latent_dim=16, g_hidden=(32, 64), d_hidden=(64, 32), batch_size=16, steps=4,
                               ckpt_every=2, log="csv", progress=False, seed=0, out_dir=out, device="cpu",
                               conditional=True, grad_accum=2))
    params = list(result.generator.parameters()) + list(result.discriminator.parameters())
    torch.save({"flat": torch.cat([p.detach().flatten() for p in params]), "in_sync": result.params_in_sync,
                "checkpoint": result.checkpoint, "last": result.last}, f"{out}/rank{rank}.pt")
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_keep_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path), str(rank)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out[-3000:]}"
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["flat"], r1["flat"])
    assert r0["in_sync"] is True and r1["in_sync"] is True
    assert r0["checkpoint"] == str(tmp_path / "last.pt") and r1["checkpoint"] is None  # rank 0 writes
    assert r0["last"]["loss_d"] != r1["last"]["loss_d"]  # each rank trained on its own shard and latents
    saved = torch.load(tmp_path / "last.pt")
    assert saved["step"] == 4 and saved["world_size"] == 2
    assert sorted(os.listdir(tmp_path)) == ["config.json", "last.pt", "rank0.pt", "rank1.pt", "scalars.csv",
                                            "worker.py"]

"""Multi-process data-parallel training with torch.distributed, started by ``torchrun``.

``torchrun --nproc-per-node N -m fastgan_kernels.cli train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address; :func:`setup` sees them and joins the group: gloo
on CPU, NCCL on GPU (one GPU per process, ``cuda:LOCAL_RANK``). Without those variables (or
with WORLD_SIZE=1) training is single-process and nothing here does anything.

What makes the ranks agree:

* the models are built from the same seed on every rank, and DDP broadcasts rank 0's
  parameters and buffers at wrap time anyway;
* DDP all-reduces (averages) the gradients of every trainable parameter in backward, so
  every rank takes the same optimiser step;
* each rank reads its own shard of every epoch (``ResumableBatchSampler``, a
  ``DistributedSampler``) and draws its own latents (the seed mixes in the rank);
* only rank 0 logs and writes checkpoints; the others wait at a barrier so nobody reads
  a checkpoint that is still being written.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclasses.dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # setup() created the process group (teardown() destroys it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but no CUDA GPU is visible")
    return dev


def setup(device: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Join the torchrun process group if there is one; returns where this process stands."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistEnv(device=dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return DistEnv(rank, world, local, dev, owns)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a seed drawn at random)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def wrap(module: nn.Module, env: DistEnv) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module``."""
    if not env.distributed or not any(p.requires_grad for p in module.parameters()):
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    return getattr(module, "module", module)


def parameters_in_sync(model: nn.Module, env: DistEnv) -> bool:
    """True when every rank holds exactly the same parameters (compares all of them)."""
    if not env.distributed:
        return True
    flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()]).to(env.device)
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    same = torch.tensor([int(torch.equal(flat, reference))], device=env.device)
    dist.all_reduce(same, op=dist.ReduceOp.MIN)
    return bool(same.item())

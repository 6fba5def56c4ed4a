"""The sweep: every recorded launch x every autotune config x every architecture, compiled in a pool.

One :class:`Variant` per (launch, config, arch); variants that reach the same specialisation share
one cache entry (:mod:`.compile`), so a repeat sweep costs little more than the recording.
``subset=True`` keeps one variant per (launched kernel, arch), 16-bit/int8 only: the one with the
largest tiles among those the autotuner may still pick after pruning, i.e. the one most likely to
run out of shared memory or registers (what ``make test`` compiles; fp32 is left to the full sweep).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
import time
from typing import Optional

from . import compile as aot_compile
from . import record


@dataclasses.dataclass
class Variant:
    launch: record.Launch
    config: Optional[dict]  # {"kwargs", "num_warps", "num_stages"}; None: the launch's own options
    arch: int
    result: dict = dataclasses.field(default_factory=dict)
    kept: bool = True  # the autotuner may pick it on this arch (it survives the module's pruning)

    @property
    def kernel(self) -> str:
        return f"{self.launch.module.rsplit('.', 1)[-1]}.{self.launch.attr}"

    @property
    def config_name(self) -> str:
        c = self.config
        if c is None:
            meta = {k: v for k, v in self.launch.kwargs.items() if k.startswith("BLOCK") or k == "num_warps"}
            return " ".join(f"{k.removeprefix('BLOCK_')}={v}" for k, v in meta.items())
        blocks = "x".join(str(v) for k, v in c["kwargs"].items() if k.startswith("BLOCK"))
        return f"{blocks} s{c['num_stages']} w{c['num_warps']}"

    @property
    def tile_size(self) -> int:
        """Product of the block and sub-tile sizes times the stages: how much a variant asks of the SM,
        to pick the subset's most demanding one (the exact costs are what the compiler reports)."""
        meta = dict(self.launch.kwargs, **(self.config or {}).get("kwargs", {}))
        size = 1
        for k, v in meta.items():
            if k.startswith(("BLOCK_", "SUB_")) and k != "GROUP_M":
                size *= int(v)
        return size * (self.config or {}).get("num_stages", 1)


def _config_dict(cfg) -> Optional[dict]:
    if cfg is None:
        return None
    return {"kwargs": dict(cfg.kwargs), "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def variants(archs=(80, 90), subset: bool = False, kernels: Optional[set] = None) -> list[Variant]:
    """The variants to compile; ``kept`` says whether the module's own pruning leaves each one in."""
    from . import pruning

    out = []
    for module in record.kernel_modules():
        for launch in record.record_module(module):
            configs = record.autotune_configs(launch)
            if kernels is not None and launch.attr not in kernels:
                continue
            for arch in archs:
                kept_ids = pruning.kept_configs(launch, configs, arch)
                out += [Variant(launch, _config_dict(c), arch, kept=id(c) in kept_ids) for c in configs]
    if subset:  # per (kernel, arch): the kept tensor-core (16-bit/int8) variant with the largest tiles
        largest: dict = {}
        for v in out:
            key = (v.kernel, v.arch)
            if v.launch.kwargs.get("F32_DOT"):
                continue  # fp32 is checked by the full sweep: the CI budget goes to the tensor-core dtypes
            if v.kept and (key not in largest or v.tile_size > largest[key].tile_size):
                largest[key] = v
        out = list(largest.values())
    return out


def _job(args):
    launch, config, arch, use_cache = args
    return aot_compile.compile_variant(launch, config, arch, use_cache)


def run(vs: list[Variant], workers: int = 2, use_cache: bool = True, progress=None) -> float:
    """Compile every variant (``workers`` processes; compiling is CPU-bound), fill ``result``; wall seconds."""
    start = time.perf_counter()
    env_interpret = os.environ.pop("TRITON_INTERPRET", None)  # the workers need the GPU code paths
    try:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: triton state is not fork-safe
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {pool.submit(_job, (v.launch, v.config, v.arch, use_cache)): v for v in vs}
            for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                v = futures[fut]
                v.result = fut.result()
                if progress is not None:
                    progress(i, len(vs), v)
    finally:
        if env_interpret is not None:
            os.environ["TRITON_INTERPRET"] = env_interpret
    return time.perf_counter() - start


def uncovered_kernels() -> list[str]:
    """Kernels (``module.name``) of the Triton package that no ``aot_launches()`` entry launches."""
    out = []
    for module in record.kernel_modules():
        launched = {record.launched_fn(launch) for launch in record.record_module(module)}
        out += [f"{module.__name__}.{name}" for name, fn in record.launchable_kernels(module).items()
                if fn not in launched]
    return out

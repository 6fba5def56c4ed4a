"""Which configs the autotuner may pick on an architecture: the module's own pruning, run ahead of time.

Each autotuned kernel prunes its config list before timing it (``prune_configs_by`` /
``early_config_prune``; the shared-memory and register budgets live in
:mod:`fastgan_kernels.triton._resources`). Here that same hook runs on the recorded launch's
arguments with the target architecture forced, so the sweep can tell apart a config that is
defined but never tried (pruned) from one the autotuner would launch.
"""
from __future__ import annotations

import importlib

import torch
from triton.runtime.autotuner import Autotuner
from triton.runtime.jit import MockTensor

from ..triton import _resources
from . import record


def _signature(cfg) -> tuple:
    return tuple(sorted(cfg.kwargs.items())), cfg.num_warps, cfg.num_stages


def kept_configs(launch: record.Launch, configs: list, arch: int) -> set:
    """ids of the configs in ``configs`` that survive the launch's pruning hook on ``arch``."""
    obj = getattr(importlib.import_module(launch.module), launch.attr)
    if not isinstance(obj, Autotuner) or obj.early_config_prune is None:
        return {id(c) for c in configs}
    args = [MockTensor(getattr(torch, a.dtype)) if isinstance(a, record.TensorArg) else a for a in launch.args]
    kwargs = {k: MockTensor(getattr(torch, v.dtype)) if isinstance(v, record.TensorArg) else v
              for k, v in launch.kwargs.items()}
    named = dict(zip(obj.fn.arg_names, args))
    with _resources.target_arch(arch):
        pruned = obj.early_config_prune(configs, named, **kwargs)
    keep = {_signature(c) for c in pruned}
    return {id(c) for c in configs if _signature(c) in keep}

"""Atomic checkpoints: a crash mid-write never leaves a broken (or half-new) checkpoint.

``torch.save`` straight to ``last.pt`` truncates the old file first; a crash (kill -9, power
loss, full disk) in the middle leaves neither the old nor the new checkpoint. Instead:

1. write to a temporary file *in the same directory* (same filesystem, so the rename below
   is atomic; a temp file elsewhere could need a copy),
2. ``flush`` + ``os.fsync`` so the bytes are on disk before the name points at them,
3. ``os.replace(tmp, path)``: readers see the old file or the new one, never a mix,
4. ``fsync`` the directory so the rename itself survives a power loss (POSIX).

If anything fails before step 3 the temp file is removed and the old checkpoint is
untouched. Stale ``.tmp`` files from a process killed mid-write are ignored by
:func:`load_checkpoint` and swept by the next successful save.
"""
from __future__ import annotations

import glob
import os
import tempfile
from typing import Any, Optional

import torch

TRAIN_FORMAT = "fastgan_kernels.train/1"
_TMP_PREFIX = ".tmp-"


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str) -> str:
    """``torch.save(obj, path)`` atomically (see the module docstring). Returns ``path``."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    for stale in glob.glob(os.path.join(directory, _TMP_PREFIX + os.path.basename(path) + ".*")):
        try:  # leftovers of processes killed mid-write
            os.unlink(stale)
        except OSError:
            pass
    return path


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` (weights and plain data only)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RuntimeError(f"could not read checkpoint {path!r}: {type(exc).__name__}: {exc}") from exc


def find_resume(out_dir: str, resume: str) -> Optional[str]:
    """The checkpoint to resume from: ``resume`` itself, or with ``'auto'`` ``out_dir/last.pt`` if it exists."""
    if not resume:
        return None
    if resume == "auto":
        path = os.path.join(out_dir, "last.pt")
        return path if os.path.isfile(path) else None
    if not os.path.isfile(resume):
        raise FileNotFoundError(f"resume: no checkpoint at {resume!r}")
    return resume

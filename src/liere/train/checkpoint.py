"""Checkpoints that a kill can never corrupt.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose
temporary file lives in the system temp directory; when that is another
filesystem the final "move" is a copy, and a kill during the copy leaves a
truncated ``last.ckpt``. ``AtomicCheckpointIO`` instead writes
``<name>.tmp-<pid>`` in the checkpoint's own directory, flushes and fsyncs it,
then ``os.replace``-s it over the target (atomic on POSIX and Windows) and
fsyncs the directory. A reader therefore sees either the previous complete
checkpoint or the new complete one, never a partial file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "find_resume_checkpoint"]


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` via a same-directory temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose saves are atomic on local filesystems."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options")
        atomic_torch_save(checkpoint, path)


def find_resume_checkpoint(run_dir: str | os.PathLike, resume: str | None) -> str | None:
    """``resume``: None (fresh run), "auto" (the run's last.ckpt, if any) or a checkpoint path."""
    if resume is None:
        return None
    if resume == "auto":
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        return str(last) if last.is_file() else None
    if not Path(resume).is_file():
        from .config import ConfigError

        raise ConfigError(f"--resume: checkpoint {resume} does not exist")
    return str(resume)

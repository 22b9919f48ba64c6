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
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "atomic_torch_save", "find_resume_checkpoint", "resolve_resume", "ResumePoint",
           "read_checkpoint"]


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


@dataclass(frozen=True)
class ResumePoint:
    """Where a run continues: a checkpoint that loads, its step, and what was skipped on the way."""

    path: str
    step: int
    skipped: tuple[str, ...] = ()  # "last.ckpt (truncated: ...)" for checkpoints newer in rank that did not load

    def describe(self, run_dir: str | os.PathLike | None = None) -> str:
        name = self.path
        if run_dir is not None:
            try:
                name = str(Path(self.path).relative_to(run_dir))
            except ValueError:
                pass
        text = f"resuming from {name} (step {self.step})"
        if self.skipped:
            text += "; skipped " + ", ".join(self.skipped)
        return text


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a Lightning checkpoint on the CPU and check that it is one; ValueError says what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ValueError("empty file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated zip, random bytes, a pickle of something else: all "corrupt"
        detail = " ".join(str(e).split())[:120] or type(e).__name__
        raise ValueError(f"corrupt or truncated ({detail})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict) or "global_step" not in ckpt:
        raise ValueError("not a Lightning training checkpoint (no state_dict / global_step)")
    return ckpt


def checkpoint_step(ckpt: dict) -> int:
    try:
        return int(ckpt.get("global_step", 0))
    except (TypeError, ValueError):
        return 0


def find_resume_checkpoint(run_dir: str | os.PathLike, resume: str | None, *, required: bool = False) -> str | None:
    """``resume``: None (fresh run), "auto" (the run's newest checkpoint that loads) or a checkpoint path.

    See :func:`resolve_resume`; this returns only the path (None: start afresh).
    """
    point = resolve_resume(run_dir, resume, required=required)
    return None if point is None else point.path


def resolve_resume(run_dir: str | os.PathLike, resume: str | None, *, required: bool = False) -> ResumePoint | None:
    """The checkpoint a run continues from, checked to load; raises ConfigError before anything is written.

    "auto" tries ``checkpoints/last.ckpt`` first, then the other checkpoints of the run
    (best.ckpt, step checkpoints) newest step first, and returns the first that loads,
    noting those it skipped. With no checkpoint at all it returns None (a fresh start),
    unless ``required`` (``liere train --resume``: resuming with nothing to resume from is
    an error, not a silent restart). Checkpoints that exist but none of which loads are
    always an error: training from step 0 would overwrite the run.
    """
    from .config import ConfigError

    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume).expanduser()
        if not path.exists():
            raise ConfigError(f"--resume: checkpoint {resume} does not exist")
        if not path.is_file():
            raise ConfigError(f"--resume: {resume} is not a file (expected a .ckpt checkpoint)")
        try:
            ckpt = read_checkpoint(path)
        except ValueError as e:
            raise ConfigError(f"--resume: checkpoint {resume} cannot be used: {e}") from None
        return ResumePoint(str(path), checkpoint_step(ckpt))
    ckpt_dir = Path(run_dir) / "checkpoints"
    files = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    last = ckpt_dir / "last.ckpt"
    others = [f for f in files if f.name != "last.ckpt" and f.is_file()]
    skipped: list[str] = []
    if last.is_file():
        try:
            return ResumePoint(str(last), checkpoint_step(read_checkpoint(last)))
        except ValueError as e:
            skipped.append(f"last.ckpt ({e})")
    elif files or others:
        skipped.append("last.ckpt (missing)")
    loaded = []
    for f in others:
        try:
            loaded.append((checkpoint_step(read_checkpoint(f)), f.stat().st_mtime, f))
        except ValueError as e:
            skipped.append(f"{f.name} ({e})")
    if loaded:
        step, _, best = max(loaded)
        return ResumePoint(str(best), step, tuple(s for s in skipped))
    if skipped and any("missing" not in s for s in skipped):
        raise ConfigError(f"--resume: no checkpoint of {run_dir} loads: {'; '.join(skipped)}; nothing was changed. "
                          "Delete the checkpoints directory to start the run afresh")
    if required:
        raise ConfigError(f"--resume: {run_dir} has no checkpoint to resume from ({ckpt_dir} has no .ckpt file); "
                          "drop --resume to start a new run")
    return None

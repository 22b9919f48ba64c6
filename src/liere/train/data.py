"""Datasets for a run, and a DataModule whose data order survives a kill mid-epoch.

Determinism across resume. Epoch e visits the training items in the order of a
permutation seeded by (seed, e), padded by wrapping so every rank gets the
same number of batches, and sharded by global batch, so W processes see what
one process with a W times larger batch would. The training loader is *stateful* in Lightning's sense (``state_dict`` /
``load_state_dict``): a checkpoint records the epoch and how many batches of it
were consumed, read from the trainer's own batch progress (not from the
sampler, which the prefetching data fetcher has already run ahead of). On
resume the sampler regenerates the same permutation and skips the consumed
batches, so the remaining batches are exactly those an uninterrupted run would
have seen. Augmentation randomness is re-seeded per step from (seed, step, rank)
by the LightningModule, so it does not depend on history either.
"""

from __future__ import annotations

import math
import tarfile
import zlib
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from .config import ConfigError, TrainConfig

__all__ = ["ResumableSampler", "ResumableLoader", "DataModule", "build_split", "clear_cache"]

_CACHE: dict[tuple, tuple] = {}


def clear_cache() -> None:
    _CACHE.clear()


def _check_path(flag: str, path: str | None) -> None:
    if path is not None and not Path(path).expanduser().exists():
        raise ConfigError(f"{flag}: {path} does not exist")


def build_split(cfg: TrainConfig, split: str, size: int | None = None, num_samples: int | None = None):
    """(dataset, DatasetInfo) of one split at one resolution (text: one context length), cached in memory.

    The cache lets ``liere compare`` build each dataset once for all its runs (synthetic
    renders and decoded images stay in memory).
    """
    from liere.data import build_dataset

    options = dict(cfg.data_options)
    if cfg.task == "text":
        options["block_size"] = size or cfg.context_length
        if cfg.data_root is not None:
            options["path"] = cfg.data_root
        size = None
    else:
        size = size or cfg.image_size
        if cfg.num_frames is not None:
            options["num_frames"] = cfg.num_frames
        if cfg.task in ("cifar10", "cifar100", "imagefolder", "volumes", "videoframes") and cfg.data_root:
            options["root"] = cfg.data_root
        if cfg.archive is not None:
            options["archive"] = cfg.archive
        if cfg.task in ("imagefolder", "volumes", "videoframes") and cfg.data_root is None:
            raise ConfigError(f"--data-root: the {cfg.task!r} task needs a data directory (--data-root DIR)")
    _check_path("--data-root", cfg.data_root)
    _check_path("--archive", cfg.archive)
    key = (cfg.task, split, size, num_samples, cfg.data_seed, repr(sorted(options.items())))
    if key not in _CACHE:
        try:
            _CACHE[key] = build_dataset(cfg.task, split=split, image_size=size, num_samples=num_samples,
                                        seed=cfg.data_seed, **options)
        except FileNotFoundError as e:
            raise ConfigError(f"{'--archive' if cfg.archive else '--data-root'}: {e}") from None
        except TypeError as e:  # an option the dataset does not take
            raise ConfigError(f"--task {cfg.task}: {e}") from None
        except (tarfile.TarError, EOFError, zlib.error, OSError, UnicodeError, ValueError) as e:
            # A truncated or corrupt archive, an unreadable image, a text file with nothing to train on, ...
            flag, path = ("--archive", cfg.archive) if cfg.archive else ("--data-root", cfg.data_root)
            what = f"{path} cannot be read" if path else f"the {cfg.task} data cannot be read"
            detail = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(f"{flag}: {what} ({detail})") from None
    return _CACHE[key]


def fraction_subset(dataset, fraction: float, seed: int):
    """The first ``round(fraction * n)`` items of a seeded permutation: nested across fractions."""
    if fraction >= 1.0:
        return dataset
    n = max(1, int(round(fraction * len(dataset))))
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(10_007 + seed))
    return torch.utils.data.Subset(dataset, sorted(perm[:n].tolist()))


class ResumableSampler(Sampler[int]):
    """Seeded per-epoch permutation, sharded across ranks, that can skip already consumed items.

    Sharding is by global batch: step k of every rank together covers
    ``perm[k*B : (k+1)*B]`` with ``B = world_size * batch_size``, rank r taking the
    r-th slice, so a DDP run on W processes sees the same batches as one process
    with a W times larger batch. ``epoch_fn`` (if given) returns the current epoch
    at iteration time: Lightning creates the first iterator of a resumed run before
    it calls ``set_epoch``, so asking the trainer is the reliable source.
    """

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1, epoch_fn=None):
        self.num_items, self.seed, self.shuffle = num_items, seed, shuffle
        self.rank, self.world_size, self.batch_size, self.epoch_fn = rank, world_size, batch_size, epoch_fn
        self.epoch, self.skip = 0, 0
        self.skip_epoch: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_items / self.world_size)

    def order(self, epoch: int) -> list[int]:
        """This rank's items for ``epoch``, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_items, generator=g).tolist()
        else:
            order = list(range(self.num_items))
        total = len(self) * self.world_size
        order += order[: total - len(order)]  # pad by wrapping: equal batch counts on every rank
        mine, big = [], self.world_size * self.batch_size
        for start in range(0, total, big):
            chunk = order[start : start + big]
            per = len(chunk) // self.world_size  # a short last global batch is split evenly
            mine += chunk[self.rank * per : (self.rank + 1) * per]
        return mine

    def __iter__(self):
        epoch = self.epoch_fn() if self.epoch_fn is not None else self.epoch
        order = self.order(epoch)
        if self.skip_epoch == epoch:
            order = order[self.skip :]
        self.skip, self.skip_epoch = 0, None
        return iter(order)


class ResumableLoader(DataLoader):
    """A DataLoader Lightning treats as stateful: its state is (epoch, consumed batches)."""

    def __init__(self, *args, progress_fn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress_fn = progress_fn

    def state_dict(self) -> dict:
        epoch, batches = self.progress_fn() if self.progress_fn is not None else (0, 0)
        return {"epoch": int(epoch), "consumed_batches": int(batches)}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.skip_epoch = int(state["epoch"])
        self.sampler.skip = int(state["consumed_batches"]) * int(self.batch_size)


class DataModule(L.LightningDataModule):
    """Train/val datasets of a config; training order is resumable, validation is sharded without padding."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        train, self.info = build_split(cfg, "train", num_samples=cfg.train_samples)
        self.train_set = fraction_subset(train, cfg.train_fraction, cfg.data_seed)
        self.val_set, _ = build_split(cfg, "val", num_samples=cfg.val_samples)
        if len(self.train_set) == 0 or len(self.val_set) == 0:
            raise ConfigError(f"--task {cfg.task}: empty training or validation set")

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _progress(self) -> tuple[int, int]:
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.completed, loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self):
        rank, world = self._rank_world()
        epoch_fn = (lambda: self.trainer.current_epoch) if self.trainer is not None else None
        sampler = ResumableSampler(len(self.train_set), self.cfg.seed, True, rank, world, self.cfg.batch_size, epoch_fn)
        return ResumableLoader(
            self.train_set, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0, progress_fn=self._progress if self.trainer else None,
        )

    def val_dataloader(self):
        rank, world = self._rank_world()
        # Unpadded shards: summing counts over ranks gives the exact full-set metric.
        subset = torch.utils.data.Subset(self.val_set, range(rank, len(self.val_set), world))
        return DataLoader(subset, batch_size=max(self.cfg.batch_size, 256), num_workers=self.cfg.num_workers)

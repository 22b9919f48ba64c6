"""Small helpers shared by the data modules: seeds, splits, cache paths, resizing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# Split codes feed the seed of the synthetic generators, so "train", "val" and
# "test" draw from independent random streams and never share a scene.
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def split_code(split: str) -> int:
    """The integer used to derive a split's random stream; raises on unknown splits."""
    try:
        return SPLIT_CODES[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(SPLIT_CODES)}") from None


def block_rng(seed: int, split: str, block: int, salt: int) -> np.random.Generator:
    """A NumPy generator that depends only on (seed, split, block, salt).

    The salt separates tasks, so that two generators never see the same stream.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), split_code(split), int(block), int(salt)]))


def default_cache_dir() -> Path:
    """``$LIERE_DATA`` if set, otherwise ``~/.cache/liere``."""
    env = os.environ.get("LIERE_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "liere"


def resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize the trailing spatial dims of ``x`` (C,H,W), (C,T,H,W) or (C,D,H,W) to ``size``.

    Images use bilinear with antialiasing, so downscaling does not alias.
    Videos are resized frame by frame over (H,W) when ``size`` has two entries;
    volumes with a three-entry ``size`` use trilinear (torch has no antialiased 3-D mode).
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-len(size):]) == size:
        return x
    xf = x.float()
    if len(size) == 2:
        lead = xf.shape[:-2]
        flat = xf.reshape(1, -1, *xf.shape[-2:])
        out = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
        out = out.reshape(*lead, *size)
    elif len(size) == 3:
        out = F.interpolate(xf.unsqueeze(0), size=size, mode="trilinear", align_corners=False)[0]
    else:
        raise ValueError(f"resize supports 2 or 3 spatial dims, got size={size}")
    # Antialiased bilinear overshoots a little at sharp edges.
    return out.clamp_(0.0, 1.0)


def as_size(size: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    """Expand an int to an ndim-tuple; pass tuples and None through."""
    if size is None:
        return None
    if isinstance(size, int):
        return (size,) * ndim
    size = tuple(int(s) for s in size)
    if len(size) != ndim:
        raise ValueError(f"expected {ndim} sizes, got {size}")
    return size


class Subset(torch.utils.data.Dataset):
    """A fixed selection of another dataset's items, keeping ``classes`` if present."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)
        self.classes = getattr(dataset, "classes", None)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]


def limit(dataset, num_samples: int | None, seed: int = 0):
    """At most ``num_samples`` items of ``dataset``, chosen by a seeded permutation.

    A permutation (not the first N) keeps the classes balanced for datasets
    stored class by class, such as image folders.
    """
    if num_samples is None or num_samples >= len(dataset):
        return dataset
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(dataset), generator=g)[: int(num_samples)]
    return Subset(dataset, sorted(idx.tolist()))


class UInt8ImageDataset(torch.utils.data.Dataset):
    """Images held as uint8 (C, H, W) tensors in ``self.images`` with ``self.labels``; items are float
    in [0, 1], resized to ``self.image_size`` squared when that is set."""

    images: "torch.Tensor | list[torch.Tensor]"
    labels: torch.Tensor
    image_size: "int | None"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[i].float().div_(255.0)
        if self.image_size is not None:
            x = resize(x, (self.image_size, self.image_size))
        return x, self.labels[i]

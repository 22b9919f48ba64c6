"""Datasets for LieRE experiments, behind one registry.

>>> from liere.data import build_dataset
>>> train_ds, info = build_dataset("pointing", split="train", image_size=32, num_samples=8000, seed=0)
>>> val_ds, _ = build_dataset("pointing", split="val", image_size=48, num_samples=1000, seed=0)

Every dataset returns ``(x, y)``: ``x`` float32 -- (C,H,W) images, (C,T,H,W)
videos, (C,D,H,W) volumes -- in [0, 1] (normalise with ``info.mean`` /
``info.std``, e.g. :class:`liere.data.transforms.Normalize`) and ``y`` an int64
label; for text both are int64 windows of byte ids, ``y`` shifted by one.

Registered names (``DATASETS``): ``pointing`` (2-D synthetic, the default,
needs no files), ``moving`` (3-D synthetic video), ``cifar10``, ``cifar100``,
``imagefolder``, ``volumes``, ``videoframes``, ``text``. The synthetic tasks
give disjoint samples for "train", "val" and "test". Real datasets map "val"
to "test" when there is no separate validation split.

Arguments common to all builders -- ``split``, ``image_size``, ``num_samples``
(a cap for real data, chosen by a ``seed``-ed permutation), ``seed`` -- are
ignored where they do not apply (e.g. ``image_size`` for text), so a CLI can
pass them uniformly; dataset-specific options are checked strictly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from . import synthetic, synthetic3d, text
from ._common import default_cache_dir, limit
from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

__all__ = ["DatasetInfo", "DATASETS", "build_dataset", "register_dataset", "default_cache_dir"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a training loop need to know about a dataset.

    Attributes:
        name: registry name.
        kind: "image" | "video" | "volume" | "text".
        num_classes: classifier outputs (for text: the vocabulary size).
        in_chans: input channels (0 for text, whose inputs are token ids).
        input_shape: spatial/temporal shape of one input: (H, W), (T, H, W), (D, H, W) or (block_size,).
        pos_dims: number of position axes a position encoding sees (2, 3 or 1).
        vocab_size: text only.
        mean, std: per-channel normalisation statistics (None for text).
        default_augment: name for :func:`liere.data.transforms.build_train_augmentation`, or None.
        class_names: label names, when known.
    """

    name: str
    kind: str
    num_classes: int
    in_chans: int
    input_shape: tuple[int, ...]
    pos_dims: int
    vocab_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    default_augment: str | None = None
    class_names: tuple[str, ...] = field(default=(), repr=False)


Builder = Callable[..., "tuple[torch.utils.data.Dataset, DatasetInfo]"]
DATASETS: dict[str, Builder] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder ``f(split, image_size, num_samples, seed, **options)`` to DATASETS."""

    def deco(fn: Builder) -> Builder:
        DATASETS[name] = fn
        return fn

    return deco


def build_dataset(name: str, split: str = "train", image_size: int | None = None,
                  num_samples: int | None = None, seed: int = 0, **options):
    """Build a registered dataset; returns ``(dataset, DatasetInfo)``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](split=split, image_size=image_size, num_samples=num_samples, seed=seed, **options)


def _unit_stats(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    # Maps [0, 1] to [-1, 1]: a neutral choice when dataset statistics are unknown.
    return (0.5,) * channels, (0.5,) * channels


def _sample_stats(ds, n: int = 512) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std over the first ``n`` items of a dataset."""
    x = torch.stack([ds[i][0] for i in range(min(n, len(ds)))])
    dims = [d for d in range(x.ndim) if d != 1]
    mean, std = x.mean(dim=dims), x.std(dim=dims).clamp(min=1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _default_count(split: str, train: int, other: int) -> int:
    return train if split == "train" else other


@register_dataset("pointing")
def _pointing(split="train", image_size=None, num_samples=None, seed=0, **options):
    """2-D synthetic "does the arrow point at the target" task (binary); see liere.data.synthetic."""
    size = image_size or 32
    n = num_samples if num_samples is not None else _default_count(split, 8000, 2000)
    ds = synthetic.PointingDataset(n, size, seed=seed, split=split, **options)
    # Statistics come from a fixed train sample at 32x32, so all splits and
    # resolutions normalise identically (the scene distribution is the same).
    probe = synthetic.PointingDataset(512, 32, seed=0, split="train", **options)
    mean, std = _sample_stats(probe)
    info = DatasetInfo("pointing", "image", 2, ds.channels, (size, size), 2, mean=mean, std=std,
                       default_augment="flip", class_names=ds.classes)
    return ds, info


@register_dataset("moving")
def _moving(split="train", image_size=None, num_samples=None, seed=0, num_frames=8, **options):
    """3-D synthetic video: direction of a moving disc (8 classes); see liere.data.synthetic3d."""
    size = image_size or 32
    n = num_samples if num_samples is not None else _default_count(split, 4000, 1000)
    ds = synthetic3d.MovingDataset(n, size, num_frames, seed=seed, split=split, **options)
    probe = synthetic3d.MovingDataset(256, 32, num_frames, seed=0, split="train", **options)
    mean, std = _sample_stats(probe)
    info = DatasetInfo("moving", "video", ds.num_classes, ds.channels, (ds.num_frames, size, size), 3,
                       mean=mean, std=std, default_augment=None, class_names=ds.classes)
    return ds, info


def _cifar(name, split, image_size, num_samples, seed, root=None, download=True, archive=None, max_per_class=None):
    from .cifar import CifarDataset

    if archive is not None:
        if name != "cifar10":
            raise ValueError("archive= (a JPEG class-folder archive) is only supported for cifar10")
        from .folders import ImageFolder

        ds = ImageFolder(archive, split, max_per_class=max_per_class, image_size=image_size)
    elif max_per_class is not None:
        raise ValueError("max_per_class= needs archive=; use num_samples= to subsample the official data")
    else:
        ds = CifarDataset(name, split, root=root, download=download, image_size=image_size)
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    size = image_size or 32
    info = DatasetInfo(name, "image", len(ds.classes), 3, (size, size), 2, mean=mean, std=std,
                       default_augment="randaugment", class_names=tuple(ds.classes))
    return limit(ds, num_samples, seed), info


@register_dataset("cifar10")
def _cifar10(split="train", image_size=None, num_samples=None, seed=0, root=None, download=True, archive=None,
             max_per_class=None):
    """CIFAR-10 (official archive, downloaded to root/$LIERE_DATA/~/.cache/liere), or archive= a JPEG
    class-folder .tgz such as ../shared/data/cifar10-jpg.tgz (then max_per_class= takes a subset)."""
    return _cifar("cifar10", split, image_size, num_samples, seed, root, download, archive, max_per_class)


@register_dataset("cifar100")
def _cifar100(split="train", image_size=None, num_samples=None, seed=0, root=None, download=True):
    """CIFAR-100 with its 100 fine labels (official archive)."""
    return _cifar("cifar100", split, image_size, num_samples, seed, root, download)


def _need_root(name: str, root) -> None:
    if root is None:
        raise ValueError(f"{name} needs root= (a folder{' or archive' if name == 'imagefolder' else ''})")


@register_dataset("imagefolder")
def _imagefolder(split="train", image_size=None, num_samples=None, seed=0, root=None,
                 max_per_class=None, channels=3):
    """Images in root/<split>/<class>/* (root: directory or .tar/.tgz archive); split=None reads root itself."""
    from .folders import ImageFolder

    _need_root("imagefolder", root)
    ds = ImageFolder(root, split, max_per_class=max_per_class, image_size=image_size, channels=channels)
    shape = (image_size, image_size) if image_size else tuple(ds.images[0].shape[-2:])
    mean, std = _unit_stats(channels)
    info = DatasetInfo("imagefolder", "image", ds.num_classes, channels, shape, 2, mean=mean, std=std,
                       default_augment="crop_flip", class_names=tuple(ds.classes))
    return limit(ds, num_samples, seed), info


@register_dataset("volumes")
def _volumes(split="train", image_size=None, num_samples=None, seed=0, root=None, size=None, max_per_class=None):
    """3-D arrays in root/<split>/<class>/*.npy; size= (int or (D,H,W)) resizes."""
    from .folders import VolumeFolder

    _need_root("volumes", root)
    ds = VolumeFolder(root, split, size=size, max_per_class=max_per_class)
    mean, std = _unit_stats(ds.in_chans)
    info = DatasetInfo("volumes", "volume", ds.num_classes, ds.in_chans, ds.size or ds.volume_shape, 3,
                       mean=mean, std=std, class_names=tuple(ds.classes))
    return limit(ds, num_samples, seed), info


@register_dataset("videoframes")
def _videoframes(split="train", image_size=None, num_samples=None, seed=0, root=None, num_frames=8,
                 channels=3, max_per_class=None):
    """Videos as root/<split>/<class>/<clip>/frame_*.jpg|png, num_frames sampled uniformly."""
    from .folders import VideoFrameFolder

    _need_root("videoframes", root)
    ds = VideoFrameFolder(root, split, num_frames, image_size, channels, max_per_class)
    mean, std = _unit_stats(channels)
    info = DatasetInfo("videoframes", "video", ds.num_classes, channels, tuple(ds[0][0].shape[1:]), 3,
                       mean=mean, std=std, class_names=tuple(ds.classes))
    return limit(ds, num_samples, seed), info


@register_dataset("text")
def _text(split="train", image_size=None, num_samples=None, seed=0, path=None, block_size=128,
          max_chars=text.DEFAULT_MAX_CHARS, val_fraction=0.1):
    """Byte-level LM windows of a text file (path=None: Python's stdlib sources); see liere.data.text."""
    ids = text.split_corpus(text.load_corpus(path, max_chars), split, val_fraction)
    ds = text.TextWindows(ids, block_size, num_samples, seed=seed, split=split)
    info = DatasetInfo("text", "text", text.VOCAB_SIZE, 0, (int(block_size),), 1, vocab_size=text.VOCAB_SIZE)
    return ds, info

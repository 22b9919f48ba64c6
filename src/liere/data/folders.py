"""Class-per-folder datasets: images (from a directory or straight from a tar archive),
``.npy`` volumes, and videos stored as frame images.

Layouts (``<split>/`` is optional; pass ``split=None`` to use ``root`` itself):

* images:  ``root/<split>/<class>/*.jpg|png|...`` or the same paths inside a
  ``.tar`` / ``.tgz`` / ``.tar.gz`` archive (possibly under a top-level folder);
* volumes: ``root/<split>/<class>/*.npy`` holding (D,H,W) or (C,D,H,W) arrays;
* videos:  ``root/<split>/<class>/<clip>/frame_*.jpg|png``.

Classes are the sorted folder names, so labels are stable across machines. A
requested ``"val"`` split that does not exist falls back to ``"test"``.

Archives are read in one sequential pass with :mod:`tarfile` (random access
into gzip is slow) and decoded with PIL, never extracted to disk. The encoded
bytes of the last archive read and the decoded images (uint8, keyed by path,
modification time, split, subset and channel count) are cached in memory, so
building the train and validation sets, or a dataset again, scans the archive
once. This suits archives of small images (CIFAR-sized), not ImageNet.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ._common import UInt8ImageDataset, as_size, resize

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm")
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")

_CACHE: dict[tuple, tuple[object, np.ndarray, list[str]]] = {}
_ARCHIVES: dict[tuple, list] = {}


def clear_cache() -> None:
    """Forget all decoded images and archive contents held in memory."""
    _CACHE.clear()
    _ARCHIVES.clear()


def is_archive(path: str | Path) -> bool:
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _natural_key(name: str):
    # frame_2 sorts before frame_10.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{path} does not exist or holds no {what}. Expected the layout described in "
        "liere.data.folders (root/<split>/<class>/...); check root= and split=."
    )


def split_dir(root: str | Path, split: str | None) -> Path:
    """``root/<split>`` (``val`` falling back to ``test``), or ``root`` when split is None."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _missing(root, "data")
    if split is None:
        return root
    for name in (split, "test") if split == "val" else (split,):
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{root} has no '{split}' folder; pass split=None to use {root} itself.")


def class_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise _missing(root, "class folders")
    return dirs


def _decode(data: bytes | Path, mode: str) -> np.ndarray:
    from PIL import Image  # imported here so the synthetic datasets work without Pillow

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert(mode))


def _select(items: list[tuple[str, str, object]], max_per_class: int | None):
    """Sort (class, name, payload) triples and keep the first max_per_class of each class."""
    items.sort(key=lambda t: (t[0], _natural_key(t[1])))
    if max_per_class is None:
        return items
    kept, count = [], {}
    for cls, name, payload in items:
        if count.get(cls, 0) < max_per_class:
            count[cls] = count.get(cls, 0) + 1
            kept.append((cls, name, payload))
    return kept


def _archive_members(path: Path) -> list[tuple[str | None, str, str, bytes]]:
    """(split folder, class, member name, bytes) of every image in an archive, cached.

    The whole archive is read once (the raw, still-encoded bytes are about the
    archive's size), so building several splits or subsets scans it only once.
    """
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _ARCHIVES:
        members = []
        with tarfile.open(path, "r:*") as tf:
            for m in tf:  # one sequential pass: random access into gzip is slow
                p = PurePosixPath(m.name)
                if m.isfile() and p.suffix.lower() in IMAGE_EXTENSIONS and len(p.parts) >= 2:
                    split = p.parts[-3] if len(p.parts) >= 3 else None
                    members.append((split, p.parts[-2], m.name, tf.extractfile(m).read()))
        _ARCHIVES.clear()  # keep one archive at most
        _ARCHIVES[key] = members
    return _ARCHIVES[key]


def _scan_archive(path: Path, split: str | None) -> list[tuple[str, str, bytes]]:
    """(class, member name, bytes) of the images of ``split`` (all images if None) in an archive."""
    members = _archive_members(path)
    if split is None:
        return [(c, n, b) for _, c, n, b in members]
    present = {s for s, _, _, _ in members}
    for name in (split, "test") if split == "val" else (split,):
        if name in present:
            return [(c, n, b) for s, c, n, b in members if s == name]
    raise FileNotFoundError(f"{path} has no images under '{split}/<class>/'; pass split=None to read all of it.")


def load_images(root: str | Path, split: str | None = None, max_per_class: int | None = None,
                channels: int = 3) -> tuple[object, np.ndarray, list[str]]:
    """Decode an image-folder dataset (directory or archive) into memory, with caching.

    Returns ``(images, labels, classes)``: ``images`` is a uint8 array
    (N, H, W, C) when all images share a size, else a list of (H, W, C) arrays.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise _missing(path, "images")
    key = (str(path.resolve()), path.stat().st_mtime_ns, split, max_per_class, channels)
    if key in _CACHE:
        return _CACHE[key]
    mode = {1: "L", 3: "RGB"}[channels]
    if path.is_file():
        items = _scan_archive(path, split)
    else:
        base = split_dir(path, split)
        items = [(d.name, f.name, f) for d in class_dirs(base) for f in d.iterdir()
                 if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    items = _select(items, max_per_class)
    if not items:
        raise _missing(path, "images")
    classes = sorted({cls for cls, _, _ in items})
    index = {c: i for i, c in enumerate(classes)}
    # PIL gives (H, W) for greyscale; make every image (H, W, C).
    arrays = [_decode(payload, mode) for _, _, payload in items]
    arrays = [a.reshape(a.shape[0], a.shape[1], channels) for a in arrays]
    images = np.stack(arrays) if len({a.shape for a in arrays}) == 1 else arrays
    labels = np.array([index[cls] for cls, _, _ in items], dtype=np.int64)
    _CACHE[key] = (images, labels, classes)
    return _CACHE[key]


class ImageFolder(UInt8ImageDataset):
    """Images from ``root/<split>/<class>/*`` (a directory or a tar archive), decoded once into memory.

    Args:
        root: directory or ``.tar``/``.tgz`` archive.
        split: subfolder to read (None: ``root`` holds the class folders).
        max_per_class: keep only the first N images (by name) of each class.
        image_size: resize (bilinear, antialiased) to this square size; needed
            when the images differ in size and are batched.
        channels: 3 (RGB) or 1 (greyscale).
    """

    def __init__(self, root, split: str | None = None, max_per_class: int | None = None,
                 image_size: int | None = None, channels: int = 3):
        images, labels, self.classes = load_images(root, split, max_per_class, channels)
        if isinstance(images, np.ndarray):
            self.images = torch.from_numpy(images).permute(0, 3, 1, 2)  # a view: no copy of the cache
        else:
            self.images = [torch.from_numpy(a).permute(2, 0, 1) for a in images]
        self.labels = torch.from_numpy(labels)
        self.image_size = image_size
        self.num_classes = len(self.classes)


def _to_unit_float(a: np.ndarray) -> torch.Tensor:
    if a.dtype == np.uint8:
        return torch.from_numpy(a.astype(np.float32) / 255.0)
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


class VolumeFolder(torch.utils.data.Dataset):
    """3-D arrays from ``root/<split>/<class>/*.npy``, returned as float32 (C, D, H, W).

    (D, H, W) arrays get a channel axis. uint8 arrays are scaled to [0, 1];
    other dtypes are converted to float32 as they are (scale them yourself).
    Files are loaded lazily. ``size`` (int or (D, H, W)) resizes trilinearly.
    """

    def __init__(self, root, split: str | None = None, size=None, max_per_class: int | None = None):
        base = split_dir(root, split)
        items = _select([(d.name, f.name, f) for d in class_dirs(base) for f in d.glob("*.npy")], max_per_class)
        if not items:
            raise _missing(base, ".npy volumes")
        self.classes = sorted({c for c, _, _ in items})
        index = {c: i for i, c in enumerate(self.classes)}
        self.files = [f for _, _, f in items]
        self.labels = torch.tensor([index[c] for c, _, _ in items], dtype=torch.int64)
        self.size = as_size(size, 3)
        self.num_classes = len(self.classes)
        first = np.load(self.files[0], mmap_mode="r")
        if first.ndim not in (3, 4):
            raise ValueError(f"{self.files[0]}: expected (D,H,W) or (C,D,H,W), got shape {first.shape}")
        self.in_chans = 1 if first.ndim == 3 else first.shape[0]
        self.volume_shape = tuple(first.shape[-3:])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = _to_unit_float(np.load(self.files[i]))
        if x.ndim == 3:
            x = x[None]
        if self.size is not None:
            x = resize(x, self.size)
        return x, self.labels[i]


def uniform_indices(n: int, num_frames: int) -> list[int]:
    """``num_frames`` indices into ``n`` frames at the centres of equal segments (repeats if n < num_frames)."""
    return [min(n - 1, int((k + 0.5) * n / num_frames)) for k in range(num_frames)]


class VideoFrameFolder(torch.utils.data.Dataset):
    """Videos stored as ``root/<split>/<class>/<clip>/frame_*.jpg|png``, as float32 (C, T, H, W).

    ``num_frames`` frames are sampled uniformly over each clip (frames sorted by
    natural order, so ``frame_10`` follows ``frame_9``). Decoding is lazy.
    """

    def __init__(self, root, split: str | None = None, num_frames: int = 8, image_size: int | None = None,
                 channels: int = 3, max_per_class: int | None = None):
        base = split_dir(root, split)
        items = _select([(d.name, c.name, c) for d in class_dirs(base) for c in d.iterdir() if c.is_dir()],
                        max_per_class)
        self.clips, labels = [], []
        self.classes = sorted({c for c, _, _ in items})
        index = {c: i for i, c in enumerate(self.classes)}
        for cls, _, clip in items:
            frames = sorted((f for f in clip.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS),
                            key=lambda f: _natural_key(f.name))
            if frames:
                self.clips.append(frames)
                labels.append(index[cls])
        if not self.clips:
            raise _missing(base, "clips of frame images")
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.num_frames, self.image_size, self.channels = int(num_frames), image_size, channels
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames = self.clips[i]
        mode = {1: "L", 3: "RGB"}[self.channels]
        arrays = [_decode(frames[k], mode) for k in uniform_indices(len(frames), self.num_frames)]
        x = torch.from_numpy(np.stack([a.reshape(a.shape[0], a.shape[1], -1) for a in arrays]))
        x = x.permute(3, 0, 1, 2).float().div_(255.0)  # (T, H, W, C) -> (C, T, H, W)
        if self.image_size is not None:
            x = resize(x, (self.image_size, self.image_size))
        return x, self.labels[i]

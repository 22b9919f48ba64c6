"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

On first use the archive is downloaded with ``urllib`` into the cache directory
(``root`` argument, else ``$LIERE_DATA``, else ``~/.cache/liere``), its MD5 is
checked while streaming, and it is extracted. A folder that already holds the
extracted ``cifar-10-batches-py`` / ``cifar-100-python`` directory, or just the
tarball, works too, without network access: the pickled batches are then read
straight out of the tarball.

The archives hold pickled dicts with ``b"data"`` (N x 3072 uint8, channel-major
32x32 images) and ``b"labels"`` (CIFAR-10) or ``b"fine_labels"`` /
``b"coarse_labels"`` (CIFAR-100). Pickle can run code, so only archives whose
checksum matches the official one are downloaded; reading a local folder trusts
that folder.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._common import UInt8ImageDataset, default_cache_dir


@dataclass(frozen=True)
class CifarSpec:
    url: str
    md5: str
    folder: str  # directory inside the archive
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: bytes
    names_key: bytes

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


CIFAR = {
    "cifar10": CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
    ),
    "cifar100": CifarSpec(
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train=("train",),
        test=("test",),
        meta="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
    ),
}

# Per-channel statistics of the training sets, used for normalisation.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class ChecksumError(RuntimeError):
    """A file's MD5 does not match the expected value."""


def md5sum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """The MD5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_md5(path: str | Path, md5: str) -> None:
    """Raise :class:`ChecksumError` (and delete the file) when ``path`` does not hash to ``md5``."""
    actual = md5sum(path)
    if actual != md5:
        Path(path).unlink(missing_ok=True)
        raise ChecksumError(
            f"MD5 mismatch for {path}: expected {md5}, got {actual}. "
            "The file was corrupt or incomplete and has been deleted; run again to re-download."
        )


def download(url: str, dest: str | Path, md5: str | None = None, chunk_size: int = 1 << 20) -> Path:
    """Download ``url`` to ``dest`` (a file path), streaming and hashing as it goes.

    The data goes to ``dest + ".part"`` first and is renamed only after the
    checksum matches, so an interrupted download never looks complete. On a
    mismatch the partial file is deleted and :class:`ChecksumError` is raised.
    An existing ``dest`` is re-verified instead of downloaded again.
    """
    dest = Path(dest)
    if dest.exists():
        if md5 is not None:
            verify_md5(dest, md5)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            for chunk in iter(lambda: response.read(chunk_size), b""):
                h.update(chunk)
                out.write(chunk)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if md5 is not None and h.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"MD5 mismatch for {url}: expected {md5}, got {h.hexdigest()}. "
            "The download was corrupt or incomplete and has been deleted; run again to retry."
        )
    part.replace(dest)
    return dest


def _safe_extract(archive: Path, dest: Path, folder: str) -> None:
    """Extract only regular files under ``folder/`` (no absolute paths, links or ``..``)."""
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            parts = Path(m.name).parts
            if not m.isfile() or not parts or parts[0] != folder or ".." in parts or Path(m.name).is_absolute():
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def _unpickle(f) -> dict:
    return pickle.load(f, encoding="bytes")


def _unpickle_path(path: Path) -> dict:
    with open(path, "rb") as f:
        return _unpickle(f)


def read_batches(source: str | Path, spec: CifarSpec, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read one split from an extracted folder or a tarball.

    Returns ``(images uint8 (N, 32, 32, 3) HWC, labels int64 (N,), class names)``.
    """
    names = spec.train if split == "train" else spec.test
    source = Path(source)
    if source.is_dir():
        blobs = {n: _unpickle_path(source / n) for n in (*names, spec.meta)}
    else:
        wanted = {f"{spec.folder}/{n}": n for n in (*names, spec.meta)}
        blobs = {}
        with tarfile.open(source, "r:*") as tf:
            for m in tf:  # one sequential pass; random access into a .gz is slow
                key = wanted.get(m.name.removeprefix("./"))
                if key is not None and m.isfile():
                    blobs[key] = _unpickle(tf.extractfile(m))
        missing = set(wanted.values()) - set(blobs)
        if missing:
            raise FileNotFoundError(f"{source} lacks {sorted(missing)} under {spec.folder}/")
    data = np.concatenate([np.asarray(blobs[n][b"data"], dtype=np.uint8) for n in names])
    labels = np.concatenate([np.asarray(blobs[n][spec.label_key], dtype=np.int64) for n in names])
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in blobs[spec.meta][spec.names_key]]
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels, classes


def locate(name: str, root: str | Path | None = None, download_ok: bool = True) -> Path:
    """The extracted folder or tarball for ``name``, downloading it if allowed.

    Looks in ``root`` (default: the cache directory) for ``<folder>/`` then for
    the tarball; downloads into ``root`` when neither is there and
    ``download_ok`` is true, otherwise raises FileNotFoundError saying how to
    get the data.
    """
    spec = CIFAR[name]
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    folder, tarball = root / spec.folder, root / spec.filename
    if folder.is_dir():
        return folder
    if tarball.is_file():
        return tarball
    if not download_ok:
        raise FileNotFoundError(
            f"{name}: neither {folder} nor {tarball} exists. Pass download=True to fetch "
            f"{spec.url} (MD5 {spec.md5}), or put the archive or its extracted "
            f"'{spec.folder}' directory in {root} (or set $LIERE_DATA / root=)."
        )
    download(spec.url, tarball, spec.md5)
    _safe_extract(tarball, root, spec.folder)
    return folder


class CifarDataset(UInt8ImageDataset):
    """CIFAR-10/100 as float32 (3, H, W) images in [0, 1] and int64 labels.

    Args:
        name: "cifar10" or "cifar100".
        split: "train" or "test" ("val" means "test": CIFAR has no separate
            validation set, and the LieRE recipe reports test accuracy).
        root: folder holding the data (default: $LIERE_DATA or ~/.cache/liere).
        download: fetch the official archive when it is missing.
        image_size: resize (bilinear, antialiased) from the native 32 when different.
    """

    def __init__(self, name: str = "cifar10", split: str = "train", root=None, download: bool = True,
                 image_size: int | None = None):
        if name not in CIFAR:
            raise ValueError(f"unknown CIFAR variant {name!r}; expected one of {sorted(CIFAR)}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        spec = CIFAR[name]
        source = locate(name, root, download)
        images, labels, self.classes = read_batches(source, spec, "train" if split == "train" else "test")
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # (N, 3, 32, 32) uint8
        self.labels = torch.from_numpy(labels)
        self.image_size = image_size

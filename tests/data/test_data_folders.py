"""Class-folder loaders: directories and tar archives of images, .npy volumes, frame videos."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liere.data import build_dataset
from liere.data.folders import ImageFolder, VideoFrameFolder, VolumeFolder, clear_cache, load_images, uniform_indices

SHARED_CIFAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpg.tgz"
CLASSES = ["cat", "dog", "zebra"]
COUNTS = {"train": [3, 5, 2], "test": [2, 1, 2]}


def colour(split, cls, k):
    # A distinct, exactly representable colour per image, so PNG round-trips can be checked.
    return (10 * CLASSES.index(cls) + k, 100 + (split == "test") * 50, 7)


def png_bytes(rgb, size=(8, 6)):
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """The same images as a directory tree and as a .tgz with a top-level folder."""
    root = tmp_path_factory.mktemp("images")
    tgz = root / "imgs.tgz"
    with tarfile.open(tgz, "w:gz") as tf:
        for split, counts in COUNTS.items():
            for cls, n in zip(CLASSES, counts):
                d = root / "tree" / split / cls
                d.mkdir(parents=True)
                for k in range(n):
                    data = png_bytes(colour(split, cls, k))
                    (d / f"{k:04d}.png").write_bytes(data)
                    info = tarfile.TarInfo(f"top/{split}/{cls}/{k:04d}.png")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        readme = tarfile.TarInfo("top/README.txt")
        readme.size = 2
        tf.addfile(readme, io.BytesIO(b"hi"))
    return root / "tree", tgz


@pytest.mark.parametrize("source", ["tree", "tgz"])
def test_image_folder_counts_labels_pixels(image_tree, source):
    root = image_tree[0] if source == "tree" else image_tree[1]
    clear_cache()
    for split, counts in COUNTS.items():
        ds = ImageFolder(root, split)
        assert ds.classes == CLASSES and len(ds) == sum(counts)
        assert torch.bincount(ds.labels).tolist() == counts
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 6, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
            k = i - sum(counts[: y.item()])
            expected = torch.tensor(colour(split, CLASSES[y.item()], k), dtype=torch.float32) / 255
            assert torch.allclose(x[:, 0, 0], expected), (split, i)


@pytest.mark.parametrize("source", ["tree", "tgz"])
def test_max_per_class_resize_greyscale(image_tree, source):
    root = image_tree[0] if source == "tree" else image_tree[1]
    ds = ImageFolder(root, "train", max_per_class=2, image_size=16, channels=1)
    assert torch.bincount(ds.labels).tolist() == [2, 2, 2]
    x, _ = ds[0]
    assert x.shape == (1, 16, 16)


def test_val_falls_back_to_test_and_cache(image_tree):
    _, tgz = image_tree
    a = load_images(tgz, "val")
    b = load_images(tgz, "val")
    assert a is b  # decoded once
    assert len(a[1]) == sum(COUNTS["test"])
    with pytest.raises(FileNotFoundError, match="holdout"):
        ImageFolder(tgz, "holdout")
    with pytest.raises(FileNotFoundError, match="holdout"):
        ImageFolder(image_tree[0], "holdout")


def test_registry_imagefolder_and_missing(image_tree, tmp_path):
    ds, info = build_dataset("imagefolder", split="test", root=image_tree[1], image_size=12)
    assert info.num_classes == 3 and info.class_names == tuple(CLASSES) and info.input_shape == (12, 12)
    assert ds[0][0].shape == (3, 12, 12)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        build_dataset("imagefolder", root=tmp_path / "nothing")
    with pytest.raises(ValueError, match="root="):
        build_dataset("imagefolder")


@pytest.mark.skipif(not SHARED_CIFAR.is_file(), reason=f"shared CIFAR-10 JPEG archive not found at {SHARED_CIFAR}")
def test_shared_cifar10_jpeg_archive():
    ds, info = build_dataset("imagefolder", split="train", root=SHARED_CIFAR, max_per_class=5)
    assert len(ds) == 50 and info.num_classes == 10
    assert info.class_names[:3] == ("airplane", "automobile", "bird")
    x, y = ds[7]
    assert x.shape == (3, 32, 32) and y.item() == 1
    assert 0.2 < torch.stack([ds[i][0] for i in range(len(ds))]).mean() < 0.7


def test_volumes(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, cls in enumerate(["a", "b"]):
            (tmp_path / split / cls).mkdir(parents=True)
            for k in range(3 + c):
                np.save(tmp_path / split / cls / f"{k}.npy", rng.integers(0, 256, (4, 6, 5), dtype=np.uint8))
    ds = VolumeFolder(tmp_path, "train")
    assert len(ds) == 7 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.in_chans == 1
    x, y = ds[3]
    raw = np.load(tmp_path / "train" / "b" / "0.npy")
    assert x.shape == (1, 4, 6, 5) and y.item() == 1
    assert torch.allclose(x[0], torch.from_numpy(raw).float() / 255)
    ds, info = build_dataset("volumes", split="test", root=tmp_path, size=8)
    assert ds[0][0].shape == (1, 8, 8, 8) and info.input_shape == (8, 8, 8) and info.pos_dims == 3
    assert info.kind == "volume"
    # Multi-channel float volumes are kept as they are.
    (tmp_path / "mc" / "x").mkdir(parents=True)
    np.save(tmp_path / "mc" / "x" / "v.npy", np.full((2, 3, 3, 3), 0.25, dtype=np.float32))
    vol = VolumeFolder(tmp_path / "mc")
    assert vol.in_chans == 2 and torch.all(vol[0][0] == 0.25)


def test_uniform_indices():
    assert uniform_indices(10, 5) == [1, 3, 5, 7, 9]
    assert uniform_indices(3, 6) == [0, 0, 1, 1, 2, 2]
    assert uniform_indices(1, 3) == [0, 0, 0]


def test_video_frames(tmp_path):
    for cls in ("left", "right"):
        for clip in range(2):
            d = tmp_path / cls / f"clip{clip}"
            d.mkdir(parents=True)
            for f in range(12):  # natural order: frame_2 before frame_10
                Image.new("L", (10, 8), 20 * f).save(d / f"frame_{f}.png")
    ds = VideoFrameFolder(tmp_path, None, num_frames=4)
    x, y = ds[2]
    assert x.shape == (3, 4, 8, 10) and y.item() == 1 and len(ds) == 4
    got = (x[0, :, 0, 0] * 255).round().tolist()
    assert got == [20 * i for i in uniform_indices(12, 4)]
    ds, info = build_dataset("videoframes", split=None, root=tmp_path, num_frames=6, image_size=16, channels=1)
    assert ds[0][0].shape == (1, 6, 16, 16) and info.input_shape == (6, 16, 16) and info.kind == "video"


@pytest.mark.skipif(not SHARED_CIFAR.is_file(), reason=f"shared CIFAR-10 JPEG archive not found at {SHARED_CIFAR}")
def test_cifar10_from_shared_archive():
    ds, info = build_dataset("cifar10", split="val", archive=SHARED_CIFAR, max_per_class=3, image_size=40)
    assert len(ds) == 30 and info.num_classes == 10 and info.class_names[-1] == "truck"
    assert info.mean[0] == pytest.approx(0.4914) and info.input_shape == (40, 40)
    assert ds[29][0].shape == (3, 40, 40) and ds[29][1].item() == 9

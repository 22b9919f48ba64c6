"""CIFAR download/checksum/reader, on tiny fake archives with the official layout (no network)."""

import hashlib
import io
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from liere.data import build_dataset, cifar
from liere.data.cifar import CIFAR, ChecksumError, CifarDataset, download, md5sum, read_batches, verify_md5

N_PER_BATCH = 6


def fake_batch(n, seed, label_key, num_classes):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, num_classes, n)]
    return {b"data": data, label_key: labels, b"batch_label": b"fake"}


def make_fake_archive(path, name):
    """A .tar.gz with the same member names and pickle format as the official archive."""
    spec = CIFAR[name]
    num_classes = 10 if name == "cifar10" else 100
    batches = {}
    for i, member in enumerate(spec.train + spec.test):
        b = fake_batch(N_PER_BATCH, i, spec.label_key, num_classes)
        if name == "cifar100":
            b[b"coarse_labels"] = [v // 5 for v in b[spec.label_key]]
        batches[member] = b
    names = [f"class{i}".encode() for i in range(num_classes)]
    batches[spec.meta] = {spec.names_key: names}
    with tarfile.open(path, "w:gz") as tf:
        for member, obj in batches.items():
            blob = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"{spec.folder}/{member}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return batches


@pytest.fixture
def fake10(tmp_path):
    path = tmp_path / "src" / CIFAR["cifar10"].filename
    path.parent.mkdir()
    return path, make_fake_archive(path, "cifar10")


def test_md5sum_matches_hashlib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 3_000_001)
    assert md5sum(p, chunk_size=1000) == hashlib.md5(b"x" * 3_000_001).hexdigest()


def test_verify_md5_deletes_corrupt_file_with_clear_message(tmp_path):
    p = tmp_path / "archive.tar.gz"
    p.write_bytes(b"corrupted")
    with pytest.raises(ChecksumError, match=r"MD5 mismatch .*expected 0{32}, got .*deleted"):
        verify_md5(p, "0" * 32)
    assert not p.exists()
    p.write_bytes(b"ok")
    verify_md5(p, hashlib.md5(b"ok").hexdigest())
    assert p.exists()


def test_download_file_url_verifies_checksum(fake10, tmp_path):
    src, _ = fake10
    dest = tmp_path / "cache" / "a.tar.gz"
    out = download(src.as_uri(), dest, md5sum(src))
    assert out == dest and dest.read_bytes() == src.read_bytes()
    assert not dest.with_name(dest.name + ".part").exists()
    # A second call re-verifies the cached file instead of downloading.
    src.unlink()
    assert download("file:///nonexistent", dest, md5sum(dest)) == dest


def test_download_checksum_mismatch_removes_file(fake10, tmp_path):
    src, _ = fake10
    dest = tmp_path / "cache" / "a.tar.gz"
    with pytest.raises(ChecksumError, match="MD5 mismatch"):
        download(src.as_uri(), dest, "f" * 32)
    assert not dest.exists() and not dest.with_name(dest.name + ".part").exists()
    assert list(dest.parent.iterdir()) == []


def test_download_error_leaves_nothing(tmp_path):
    dest = tmp_path / "a.bin"
    with pytest.raises(OSError):
        download((tmp_path / "missing.bin").as_uri(), dest)
    assert not dest.exists() and not dest.with_name("a.bin.part").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_reader_from_tarball_and_folder(tmp_path, name):
    spec = CIFAR[name]
    tarball = tmp_path / spec.filename
    batches = make_fake_archive(tarball, name)
    x, y, classes = read_batches(tarball, spec, "train")
    n_train = N_PER_BATCH * len(spec.train)
    assert x.shape == (n_train, 32, 32, 3) and x.dtype == np.uint8
    assert y.tolist() == sum((batches[m][spec.label_key] for m in spec.train), [])
    assert len(classes) == (10 if name == "cifar10" else 100) and classes[3] == "class3"
    # Channel-major rows become HWC images: red plane first.
    first = batches[spec.train[0]][b"data"][0]
    assert np.array_equal(x[0, :, :, 0].ravel(), first[:1024])
    assert np.array_equal(x[0, :, :, 2].ravel(), first[2048:])
    cifar._safe_extract(tarball, tmp_path, spec.folder)
    x2, y2, _ = read_batches(tmp_path / spec.folder, spec, "test")
    assert x2.shape == (N_PER_BATCH, 32, 32, 3)
    assert y2.tolist() == batches[spec.test[0]][spec.label_key]


def test_locate_downloads_extracts_and_reuses(fake10, tmp_path, monkeypatch):
    src, batches = fake10
    fake_spec = replace(CIFAR["cifar10"], url=src.as_uri(), md5=md5sum(src))
    monkeypatch.setitem(CIFAR, "cifar10", fake_spec)
    root = tmp_path / "root"
    folder = cifar.locate("cifar10", root)
    assert folder == root / "cifar-10-batches-py" and (folder / "data_batch_3").is_file()
    ds = CifarDataset("cifar10", "test", root=root, download=False)
    assert len(ds) == N_PER_BATCH
    x, y = ds[2]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.item() == batches["test_batch"][b"labels"][2]
    assert torch.allclose(x[0].flatten() * 255, torch.tensor(batches["test_batch"][b"data"][2][:1024]).float())


def test_corrupt_download_is_rejected(fake10, tmp_path, monkeypatch):
    src, _ = fake10
    monkeypatch.setitem(CIFAR, "cifar10", replace(CIFAR["cifar10"], url=src.as_uri(), md5="0" * 32))
    with pytest.raises(ChecksumError):
        cifar.locate("cifar10", tmp_path / "root")
    assert not (tmp_path / "root" / "cifar-10-python.tar.gz").exists()


def test_env_var_cache_dir_and_missing_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LIERE_DATA", str(tmp_path / "env"))
    assert cifar.default_cache_dir() == tmp_path / "env"
    with pytest.raises(FileNotFoundError, match=r"env.*download=True.*cs\.toronto\.edu"):
        build_dataset("cifar100", download=False)


def test_registry_reads_local_tarball_and_resizes(tmp_path):
    make_fake_archive(tmp_path / CIFAR["cifar100"].filename, "cifar100")
    ds, info = build_dataset("cifar100", split="val", root=tmp_path, download=False, image_size=48)
    assert info.num_classes == 100 and info.input_shape == (48, 48) and info.pos_dims == 2
    assert info.default_augment == "randaugment" and len(info.mean) == 3
    x, _ = ds[0]
    assert x.shape == (3, 48, 48) and 0 <= x.min() and x.max() <= 1
    ds, _ = build_dataset("cifar100", split="train", root=tmp_path, download=False, num_samples=4)
    assert len(ds) == 4


def test_official_checksums_are_pinned():
    assert CIFAR["cifar10"].md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR["cifar100"].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert CIFAR["cifar10"].url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR["cifar100"].url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

"""Byte-level text corpus and LM windows."""

import sysconfig
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.data import build_dataset
from liere.data.text import TextWindows, decode, encode, load_corpus, split_corpus, stdlib_corpus


def test_stdlib_corpus_is_deterministic_sorted_and_capped():
    corpus = stdlib_corpus(50_000)
    assert len(corpus) == 50_000 and corpus == stdlib_corpus(50_000)
    root = Path(sysconfig.get_paths()["stdlib"])
    first = sorted(p for p in root.rglob("*.py") if not {"site-packages", "__pycache__"} & set(p.parts))[0]
    head = first.read_bytes()[:1000]
    assert corpus.startswith(head)
    ids = load_corpus(None, 1000)
    assert ids.dtype == torch.uint8 and bytes(ids.tolist()) == corpus[:1000]


def test_user_file_and_missing_file(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("héllo wörld\n" * 10, encoding="utf-8")
    ids = load_corpus(p, None)
    assert decode(ids) == p.read_text(encoding="utf-8")
    assert load_corpus(p, 5).tolist() == list(b"h\xc3\xa9ll")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_corpus(tmp_path / "nope.txt")


def test_split_is_contiguous_and_disjoint():
    ids = torch.arange(1000) % 256
    train, val = split_corpus(ids, "train", 0.1), split_corpus(ids, "val", 0.1)
    assert len(train) == 900 and len(val) == 100
    assert torch.equal(torch.cat([train, val]), ids)
    assert torch.equal(split_corpus(ids, "test", 0.1), val)


def test_sequential_windows_shift_by_one_and_cover_text():
    ids = encode("abcdefghijklmnopqrstuvwxyz")
    ds = TextWindows(ids, block_size=5)
    assert len(ds) == 5  # starts 0, 5, 10, 15, 20 (20 + 5 + 1 <= 26)
    x, y = ds[1]
    assert x.dtype == torch.int64 and y.dtype == torch.int64
    assert decode(x) == "fghij" and decode(y) == "ghijk"
    assert torch.equal(x[1:], y[:-1])
    assert decode(ds[4][1]) == "vwxyz"


@settings(max_examples=30, deadline=None)
@given(n=st.integers(10, 300), block=st.integers(1, 9), num=st.integers(1, 20), seed=st.integers(0, 99))
def test_random_windows_deterministic_and_in_range(n, block, num, seed):
    ids = torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(n))
    a = TextWindows(ids, block, num_samples=num, seed=seed)
    b = TextWindows(ids, block, num_samples=num, seed=seed)
    assert len(a) == num
    for i in range(num):
        x, y = a[i]
        s = int(a.starts[i])
        assert torch.equal(x, ids[s : s + block].long()) and torch.equal(y, ids[s + 1 : s + block + 1].long())
        assert torch.equal(x, b[i][0])


def test_too_short_text():
    with pytest.raises(ValueError, match="too short"):
        TextWindows(encode("abc"), block_size=3)


def test_registry_text(tmp_path):
    ds, info = build_dataset("text", split="val", block_size=64, max_chars=100_000, image_size=32)
    assert info.kind == "text" and info.vocab_size == 256 and info.num_classes == 256
    assert info.input_shape == (64,) and info.pos_dims == 1 and info.mean is None
    assert len(ds) == (10_000 - 1) // 64
    train, _ = build_dataset("text", split="train", block_size=64, max_chars=100_000, num_samples=7, seed=1)
    assert len(train) == 7 and train[0][0].shape == (64,)
    p = tmp_path / "c.txt"
    p.write_bytes(bytes(range(256)) * 4)
    ds, _ = build_dataset("text", path=p, block_size=16, val_fraction=0.25)
    assert len(ds) == (768 - 1) // 16 and ds[0][0].tolist() == list(range(16))

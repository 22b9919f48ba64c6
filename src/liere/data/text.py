"""Byte-level language-modelling data that is always available offline.

The default corpus is Python's own standard library: the ``.py`` files under
``sysconfig.get_paths()["stdlib"]`` (``site-packages`` excluded), in sorted
path order, concatenated and capped at ``max_chars`` bytes. It differs a
little between Python versions, so compare losses only on one interpreter.
Any UTF-8 (or other) text file works too.

The vocabulary is the 256 byte values: no tokenizer to train or ship, and
every file can be encoded. The corpus is split contiguously, the first
``1 - val_fraction`` for training and the rest for validation (and test), so
validation text is never seen in training.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path

import numpy as np
import torch

from ._common import split_code

VOCAB_SIZE = 256
DEFAULT_MAX_CHARS = 2_000_000


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as int64 ids."""
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).long()


def decode(ids) -> str:
    """Inverse of :func:`encode`; invalid UTF-8 (e.g. a cut multi-byte char) becomes U+FFFD."""
    return bytes(torch.as_tensor(ids, dtype=torch.uint8).tolist()).decode("utf-8", errors="replace")


@functools.lru_cache(maxsize=4)
def stdlib_corpus(max_chars: int = DEFAULT_MAX_CHARS) -> bytes:
    """The first ``max_chars`` bytes of the sorted, concatenated stdlib ``.py`` sources."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune third-party packages (not part of the stdlib, and possibly huge).
        dirnames[:] = [d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__")]
        files.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    files.sort()
    chunks, total = [], 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        chunks.append(data)
        total += len(data)
        if total >= max_chars:
            break
    corpus = b"".join(chunks)[:max_chars]
    if not corpus:
        raise FileNotFoundError(f"no Python sources found under {root}")
    return corpus


def load_corpus(path: str | Path | None = None, max_chars: int | None = DEFAULT_MAX_CHARS) -> torch.Tensor:
    """Byte ids (uint8 tensor) of a text file, or of the stdlib corpus when ``path`` is None."""
    if path is None:
        data = stdlib_corpus(DEFAULT_MAX_CHARS if max_chars is None else int(max_chars))
    else:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"text file {p} does not exist; pass path=None for the built-in stdlib corpus")
        data = p.read_bytes()[:max_chars]
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def split_corpus(ids: torch.Tensor, split: str, val_fraction: float = 0.1) -> torch.Tensor:
    """The contiguous part of the corpus for ``split`` ("val" and "test" share the tail)."""
    split_code(split)
    cut = int(round(len(ids) * (1.0 - val_fraction)))
    return ids[:cut] if split == "train" else ids[cut:]


class TextWindows(torch.utils.data.Dataset):
    """(input_ids[T], target_ids[T]) windows, targets shifted by one position.

    Args:
        ids: the token ids of this split (uint8 or int tensor).
        block_size: T.
        num_samples: None for sequential non-overlapping windows covering the
            text; an int for that many windows at random offsets, each fixed by
            ``(seed, split, index)`` so epochs and workers agree.
    """

    def __init__(self, ids: torch.Tensor, block_size: int = 128, num_samples: int | None = None,
                 seed: int = 0, split: str = "train"):
        if len(ids) < block_size + 1:
            raise ValueError(f"text of {len(ids)} tokens is too short for block_size={block_size}")
        self.ids, self.block_size = ids, int(block_size)
        self.num_samples = num_samples
        if num_samples is not None:
            rng = np.random.default_rng([int(seed), split_code(split), 3])
            self.starts = torch.from_numpy(rng.integers(0, len(ids) - block_size, int(num_samples)))
        else:
            self.starts = torch.arange(0, len(ids) - block_size, block_size)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = int(self.starts[i])
        chunk = self.ids[s : s + self.block_size + 1].long()
        return chunk[:-1], chunk[1:]

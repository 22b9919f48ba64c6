"""Keep freed CPU memory in the process instead of handing it back to the OS (glibc's ``malloc``).

A training step allocates and frees the same few-megabyte activations every step. Under glibc's defaults,
blocks above an adaptive threshold are mapped fresh from the OS, and the top of the heap is trimmed back
whenever enough of it is free, so the next step faults every page in again: ~130,000 minor page faults per
ViT-Tiny step (batch 32) with the block rotations, ~430 ms of system time across the two threads, against
~1,000 with the settings below (``liere bench --case step`` prints the faults per step of every row).

``tune_allocator()`` raises the threshold to glibc's maximum (32 MB) and stops the trimming, so the process
keeps its peak heap for reuse. It changes no result, only where memory comes from; the cost is that the
process's resident memory stays at its peak. The ``liere`` command calls it at start-up (turn it off with
``LIERE_MALLOC_TUNE=0``); a training script of your own can call it once at the top, or set the same through
glibc's environment variables (``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647``), or run
with jemalloc or tcmalloc. Elsewhere (macOS, musl, Windows) it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

from ._env import turned_off

__all__ = ["tune_allocator", "allocator_status", "tune_if_requested"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
_NO_TRIM = 2**31 - 1
_TOP_PAD = 64 << 20

_state = {"status": "glibc defaults" if sys.platform.startswith("linux") else "system allocator (not glibc)"}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # musl has no such function: AttributeError
        return libc
    except (OSError, AttributeError):
        return None


def tune_allocator() -> str:
    """Apply the settings above to this process (idempotent); returns ``allocator_status()``."""
    if _state.get("tuned"):
        return _state["status"]
    libc = _glibc()
    if libc is None:
        _state["status"] = "not tuned (not glibc)"
        return _state["status"]
    ok = all(libc.mallopt(param, value) == 1 for param, value in
             ((_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _NO_TRIM), (_M_TOP_PAD, _TOP_PAD)))
    _state.update(tuned=ok, status="tuned by liere (mmap threshold 32 MB, no trimming)" if ok else
                  "glibc refused the settings (defaults kept)")
    return _state["status"]


def allocator_status() -> str:
    return _state["status"]


def tune_if_requested() -> str:
    """What the ``liere`` command and its worker processes (spawned pool, SLURM, Ray) call at start-up:
    ``tune_allocator()`` unless ``LIERE_MALLOC_TUNE`` is 0/false/no/off."""
    if turned_off("LIERE_MALLOC_TUNE"):
        return allocator_status()
    return tune_allocator()

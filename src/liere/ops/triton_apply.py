"""Fused Triton kernel rotating q and k in one pass (CUDA). Placeholder until the kernel lands."""

from __future__ import annotations


def available() -> bool:
    return False

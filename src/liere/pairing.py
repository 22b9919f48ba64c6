"""Channel pairing conventions: which channels of a head form a rotation block.

liere's own basis is **interleaved**: 2x2 block m acts on channels (2m, 2m+1) and
a b x b block on b consecutive channels (the original RoPE, rotary-embedding-torch,
RoPE-ViT, timm's ``rotate_half=False``).

The **half** convention (``rotate_half`` in GPT-NeoX, Llama, Hugging Face,
timm's EVA with ``rotate_half=True`` and DINOv3) pairs channel m with m + D/2.
It is the interleaved convention after a fixed permutation of the channels:

    interleaved[2m + i] = half[m + i * D/2],   i in {0, 1},  m < D/2,

so a method with ``pairing="half"`` permutes q and k to the interleaved basis,
rotates, and permutes back. Blocks of size b take b consecutive channels of
the interleaved basis, i.e. the pairs (m, m + D/2) for b/2 consecutive m: the
2x2 sub-blocks on the diagonal of a b x b block are the half-split pairs.
Nothing else changes: attention logits under ``"half"`` equal those under
``"interleaved"`` once q and k are permuted with ``to_interleaved``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["PAIRINGS", "check_pairing", "to_interleaved", "from_interleaved", "permutation"]

PAIRINGS = ("interleaved", "half")


def check_pairing(pairing: str, head_dim: int) -> str:
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing: expected one of {PAIRINGS}, got {pairing!r}")
    if pairing == "half" and head_dim % 2:
        raise ValueError(f"pairing: 'half' pairs channel m with m + head_dim/2 and needs an even head_dim, "
                         f"got {head_dim}")
    return pairing


def to_interleaved(x: Tensor, dim: int | None = None) -> Tensor:
    """Half-split channels (..., D) -> interleaved: [x0, x_{r/2}, x1, x_{r/2+1}, ...] on the first r = dim
    (default D) channels; the rest pass through (partial rotary, ``rotary_dim``)."""
    r = x.shape[-1] if dim is None else dim
    head = x[..., :r].unflatten(-1, (2, r // 2)).transpose(-1, -2).flatten(-2)
    return head if r == x.shape[-1] else torch.cat((head, x[..., r:]), -1)


def from_interleaved(x: Tensor, dim: int | None = None) -> Tensor:
    """Inverse of ``to_interleaved``."""
    r = x.shape[-1] if dim is None else dim
    head = x[..., :r].unflatten(-1, (r // 2, 2)).transpose(-1, -2).flatten(-2)
    return head if r == x.shape[-1] else torch.cat((head, x[..., r:]), -1)


def permutation(head_dim: int, pairing: str = "half", rotary_dim: int | None = None) -> Tensor:
    """Index p with ``to_interleaved(x, rotary_dim) == x[..., p]`` (the identity for ``"interleaved"``)."""
    index = torch.arange(head_dim)
    return index if check_pairing(pairing, rotary_dim or head_dim) == "interleaved" else to_interleaved(index, rotary_dim)

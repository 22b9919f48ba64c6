"""``build``: a position encoding from its name."""

from __future__ import annotations

import contextlib

import torch

from .base import PositionEncoding
from .registry import METHODS, canonical_name

__all__ = ["build"]


def build(
    name: str, *, pos_dims: int, head_dim: int, num_heads: int, block_size: int | None = None,
    device: torch.device | str | None = None, dtype: torch.dtype | None = None, **options
) -> PositionEncoding:
    """Build a position encoding by name (any of ``liere.METHODS`` or ``liere.ALIASES``).

    ``block_size`` left unset takes the method's ``default_block_size`` (None: head_dim);
    methods with a ``fixed_block_size`` accept no other. Common options: ``num_layers``
    and ``share_layers`` (one set of generators per layer, or one shared), ``share_heads``,
    ``num_prefix_tokens`` and ``prefix_position`` (CLS/register tokens: identity rotation,
    or a chosen position), ``layout`` ("bhnd" or "bnhd"), ``cache`` (eval-mode cache),
    ``pairing`` ("interleaved": pairs (2m, 2m+1), or "half": (m, m + D/2) as ``rotate_half``;
    see ``liere.pairing``).
    A method's own options are its class's ``options`` attribute, e.g.
    ``liere.METHODS["rope_mixed"].options == ("theta", "rotate")``.

    ``device`` creates the tensors there (``"meta"``: no memory; after ``to_empty()`` the fixed
    buffers are recomputed and ``load_state_dict`` or ``reset_parameters()`` fills the rest);
    ``dtype`` casts the learned tensors (fixed frequencies stay float32, see ``PositionEncoding``).
    """
    cls = METHODS[canonical_name(name)]
    with torch.device(device) if device is not None else contextlib.nullcontext():
        encoding = cls(pos_dims=pos_dims, head_dim=head_dim, num_heads=num_heads, block_size=block_size, **options)
    return encoding if dtype is None else encoding.to(dtype)

"""Shared pieces of the ecosystem tests: the methods under test and a float64 oracle with prefix tokens.

The oracle is the core tests' dense ``matrix_exp`` of the generators
(``tests/oracle.py``), extended with the identity rotation of prefix tokens.
"""

from __future__ import annotations

import torch

import liere
from oracle import oracle_rotation

# Every rotary method, with the block size each is tested at (liere: 4, a non-commuting block; 8 takes the
# scaling-and-squaring exponential), plus the two non-rotary baselines.
ROTARY = {"liere": 4, "liere_ss": 8, "comrope_ap": 4, "comrope_ld": 4, "rope_mixed": 2, "rope_axial": 2,
          "spherical": 3, "string": 2, "string_circulant": 2}
ALL = [*ROTARY, "absolute", "none"]


def build(name: str, *, pos_dims: int = 2, head_dim: int = 16, num_heads: int = 2, **options):
    method = "liere" if name == "liere_ss" else name
    if name in ROTARY:
        options.setdefault("block_size", ROTARY[name])
    pe = liere.build(method, pos_dims=pos_dims, head_dim=head_dim, num_heads=num_heads, **options)
    if method == "string":  # a generic basis (the Cayley skew starts at 0, P = I)
        with torch.no_grad():
            pe.skew_upper.normal_(0.0, 0.3)
    return pe


def oracle_with_prefix(pe, positions: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """float64 (H, P+N, D, D) or (B, H, P+N, D, D): identity for the P prefix tokens, then the oracle."""
    patches = oracle_rotation(pe, positions, layer)
    p = pe.num_prefix_tokens
    if p == 0:
        return patches
    eye = torch.eye(pe.head_dim, dtype=patches.dtype).expand(*patches.shape[:-3], p, pe.head_dim, pe.head_dim)
    return torch.cat((eye, patches), -3)


def rotate_dense(matrices: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply dense (H, N, D, D) or (B, H, N, D, D) matrices to x (B, H, N, D) in float64."""
    if matrices.ndim == 4:
        matrices = matrices[None]
    return torch.einsum("bhnij,bhnj->bhni", matrices, x.double())


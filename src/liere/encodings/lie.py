"""LieRE (Ostmeier et al. 2024): learned skew generators that need not commute.

Each axis k has a learned skew-symmetric generator per head (and layer), block
diagonal with M = head_dim // b blocks of size b:

    R(p) = exp( sum_k p_k A_k ),   A_k = blockdiag_m( U_{k,m} - U_{k,m}^T ),

with U strictly upper triangular, its entries initialised U[0, 2 pi) (times
``init_scale``) as in the LieRE code. b = head_dim is the paper's dense
generator; b = 2 makes every block a planar rotation, which commutes (it is
then RoPE-Mixed with LieRE's initialisation) and takes the cos/sin path.
Channels past M*b are left unrotated. For b > 2 the generators do not
commute, so the score <R(p) q, R(p') k> depends on p and p', not only on p' - p.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..rotation import Rotation
from .base import BlockEncoding, finite_float, skew_from_upper

__all__ = ["LieRE", "LieREDense"]


class LieRE(BlockEncoding):
    name = "liere"
    options = ("init_scale",)
    default_block_size = None  # head_dim: the paper's dense generator
    default_convention = "liere"

    def __init__(self, *, init_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        init_scale = finite_float("init_scale", init_scale)
        self.commuting = self.block_size == 2
        b = self.block_size
        shape = (self.param_layers, self.pos_dims, self.param_heads, self.num_blocks, b * (b - 1) // 2)
        self.upper = nn.Parameter(torch.rand(shape) * (2 * math.pi * init_scale))

    def generator_blocks(self) -> Tensor:
        return skew_from_upper(self.upper, self.block_size)

    def _compute(self, positions: Tensor) -> Rotation:
        if self.block_size == 2:
            # A 2x2 skew block [[0, -u], [u, 0]] has frequency -u.
            angles = torch.einsum("bnd,ldhm->lbhnm", positions, -self.upper[..., 0].to(positions.dtype))
            return Rotation(self.head_dim, cos=torch.cos(angles), sin=torch.sin(angles))
        return super()._compute(positions)


class LieREDense(LieRE):
    """LieRE as the paper states it: one dense generator per axis and head, b = head_dim, whatever is asked."""

    name = "liere_dense"

    @classmethod
    def block_size_for(cls, head_dim: int, block_size: int | None = None) -> int:
        if block_size is not None and block_size != head_dim:
            raise ValueError(f"block_size: 'liere_dense' uses one head_dim x head_dim block (head_dim={head_dim}), "
                             f"got {block_size}; use 'liere' for smaller blocks")
        return head_dim

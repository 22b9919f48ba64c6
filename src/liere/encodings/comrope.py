"""ComRoPE (Yu et al., CVPR 2025): trainable generators that commute by construction.

Both variants use M = head_dim // b skew blocks S_m = P_m - P_m^T, one learned
b x b matrix P_m per block (per head and layer), initialised N(0, init_std^2).

ComRoPE-AP ("axis-partitioned"): block m belongs to axis a(m) = m mod d, so

    A_k = blockdiag_m( [a(m) = k] S_m ),   R(p)_m = exp(p_{a(m)} S_m).

Generators of different axes live in different blocks and commute.

ComRoPE-LD ("linearly dependent"): every axis scales the same skew matrix,

    A_k = blockdiag_m( theta_{k,m} S_m ),  R(p)_m = exp((sum_k theta_{k,m} p_k) S_m),

with learned per-axis scales theta (initialised N(0, 1)). Multiples of one
matrix commute. In both, G(p) is a scalar times S_m per block, so G(p) costs
one multiply per block entry instead of a sum over axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.expm import expm_4x4_scaled
from ..rotation import Rotation
from .base import BlockEncoding, finite_float

__all__ = ["ComRoPEAP", "ComRoPELD"]


class _ComRoPE(BlockEncoding):
    commuting = True
    options = ("init_std",)
    default_block_size = 4
    default_convention = "centers"

    def __init__(self, *, init_std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        init_std = finite_float("init_std", init_std, non_negative=True)
        b = self.block_size
        self.matrices = nn.Parameter(init_std * torch.randn(self.param_layers, self.param_heads, self.num_blocks, b, b))

    def skew(self) -> Tensor:
        """S_m = P_m - P_m^T, shape (L, Hp, M, b, b), in float32 at least (after ``.half()`` too)."""
        m = self.matrices
        m = m.float() if m.dtype in (torch.float16, torch.bfloat16) else m
        return m - m.transpose(-1, -2)

    def block_angles(self, positions: Tensor) -> Tensor:
        """t_m(p), the scalar multiplying S_m: broadcastable to (L, B', Hp, N, M)."""
        raise NotImplementedError

    def _blocks_at(self, positions: Tensor) -> Tensor:
        t = self.block_angles(positions)
        return t[..., None, None] * self.skew().to(positions.dtype)[:, None, :, None]

    def _compute(self, positions: Tensor) -> Rotation:
        if self.block_size == 4:
            # Structure-aware: exp(t S) is elementwise in t once S+-, S+ S- are known (ops.expm_4x4_scaled).
            t = self.block_angles(positions)
            blocks = expm_4x4_scaled(self.skew().to(positions.dtype)[:, None, :, None], t)
            return Rotation(self.head_dim, blocks=blocks, orthogonal=True)
        return super()._compute(positions)


class ComRoPEAP(_ComRoPE):
    name = "comrope_ap"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._register_fixed("block_axis")

    def _make_buffer(self, name: str) -> Tensor:
        if name != "block_axis":
            return super()._make_buffer(name)
        return torch.arange(self.num_blocks) % self.pos_dims

    def generator_blocks(self) -> Tensor:
        owned = nn.functional.one_hot(self.block_axis, self.pos_dims).T.float()  # (d, M)
        return owned[None, :, None, :, None, None] * self.skew()[:, None]

    def block_angles(self, positions: Tensor) -> Tensor:
        return positions[..., self.block_axis][None, :, None]  # (1, B', 1, N, M)


class ComRoPELD(_ComRoPE):
    name = "comrope_ld"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.scales = nn.Parameter(torch.randn(self.param_layers, self.pos_dims, self.param_heads, self.num_blocks))

    def generator_blocks(self) -> Tensor:
        return self.scales[..., None, None] * self.skew()[:, None]

    def block_angles(self, positions: Tensor) -> Tensor:
        return torch.einsum("bnd,ldhm->lbhnm", positions, self.scales.to(positions.dtype))

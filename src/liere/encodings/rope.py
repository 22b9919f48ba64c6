"""Fixed-frequency RoPE: 1-D (Su et al. 2021), axial 2-D/3-D (RoPE-ViT), and the LieRE code's VisionLlama.

1-D RoPE rotates channel pair j of a token at position p by the angle

    p * theta^(-2j / D),   j = 0 .. D/2 - 1,   D = rotary_dim (head_dim unless partial),

i.e. A = blockdiag_j(theta^(-2j/D) J) with J = [[0, -1], [1, 0]].

Axial RoPE (Heo et al. 2024, "Rotary Position Embedding for Vision
Transformer"; Chu et al. 2024, VisionLLaMA) gives each of the d axes its own
contiguous share of the D/2 pairs. Axis k owns m_k pairs (the first
``D/2 mod d`` axes own one extra when d does not divide D/2), and its pair j
turns at theta^(-j / m_k), so A_k is non-zero only on axis k's pairs. All
generators are diagonal in the same 2x2 planes, so they commute and
<R(p) q, R(p') k> depends on p' - p only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import PlanarEncoding, finite_float

__all__ = ["RoPE1D", "AxialRoPE", "VisionLlamaRoPE", "split_pairs"]


def split_pairs(num_pairs: int, pos_dims: int) -> list[int]:
    """How many of ``num_pairs`` channel pairs each axis owns (as even as possible)."""
    base, extra = divmod(num_pairs, pos_dims)
    return [base + (k < extra) for k in range(pos_dims)]


class RoPE1D(PlanarEncoding):
    name = "rope"
    options = ("theta",)
    default_convention = "index"

    def __init__(self, *, theta: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if self.pos_dims != 1:
            raise ValueError(f"pos_dims: 'rope' is 1-D RoPE and needs pos_dims=1, got {self.pos_dims}; "
                             f"use 'rope_axial' or 'rope_mixed' for {self.pos_dims}-D positions")
        self.theta = finite_float("theta", theta, positive=True)
        self._register_fixed("freqs")

    def _make_buffer(self, name: str) -> Tensor:
        if name != "freqs":
            return super()._make_buffer(name)
        j = torch.arange(self.num_blocks, dtype=torch.float64)
        return (self.theta ** (-2.0 * j / self.rotary_dim)).float().view(1, 1, 1, -1)

    def frequencies(self) -> Tensor:
        return self.freqs


class AxialRoPE(PlanarEncoding):
    name = "rope_axial"
    aliases = ("rope_vit",)
    options = ("theta",)
    default_convention = "index"

    def __init__(self, *, theta: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.theta = finite_float("theta", theta, positive=True)
        self._register_fixed("freqs")

    def _make_buffer(self, name: str) -> Tensor:
        if name != "freqs":
            return super()._make_buffer(name)
        freqs = torch.zeros(1, self.pos_dims, 1, self.num_blocks, dtype=torch.float64)
        start = 0
        for axis, count in enumerate(split_pairs(self.num_blocks, self.pos_dims)):
            j = torch.arange(count, dtype=torch.float64)
            freqs[0, axis, 0, start : start + count] = self.theta ** (-j / max(count, 1))
            start += count
        return freqs.float()

    def frequencies(self) -> Tensor:
        return self.freqs


class VisionLlamaRoPE(PlanarEncoding):
    name = "visionllama"
    default_convention = "liere"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        per_axis = self.num_blocks // self.pos_dims
        if per_axis < 1:
            raise ValueError(f"head_dim: visionllama needs at least one channel pair per axis, got head_dim="
                             f"{self.head_dim} for pos_dims={self.pos_dims}")
        self._register_fixed("freqs")

    def _make_buffer(self, name: str) -> Tensor:
        if name != "freqs":
            return super()._make_buffer(name)
        per_axis = self.num_blocks // self.pos_dims
        freqs = torch.zeros(1, self.pos_dims, 1, self.num_blocks, dtype=torch.float64)
        j = torch.arange(per_axis, dtype=torch.float64)
        magnitudes = torch.exp(-4.0 * j / max(per_axis - 1, 1))
        for axis in range(self.pos_dims):
            freqs[0, axis, 0, axis * per_axis : (axis + 1) * per_axis] = magnitudes
        return freqs.float()

    def frequencies(self) -> Tensor:
        return self.freqs

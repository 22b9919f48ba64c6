"""Spherical RoPE (van de Geijn et al. 2025, "A Circular Argument: Does RoPE need
to be Equivariant for Vision?", arXiv 2511.08368).

The non-commuting analogue of RoPE-Mixed: channels are grouped in 3-D blocks,
and each position coordinate turns every block about a different axis of
that 3-D space, with a learned frequency per block, axis, head and layer.
The per-coordinate rotations are composed in a fixed order, as Euler
angles (yaw, pitch, roll) are:

    R(p)_m = exp(p_0 w_{0,m} L_z) exp(p_1 w_{1,m} L_y) exp(p_2 w_{2,m} L_x) ...,

where L_x, L_y, L_z generate rotations about the x, y and z axes and
coordinate k uses axis (z, y, x)[k mod 3]. So A_k = blockdiag_m(w_{k,m} L_{axis(k)})
and R(p) = prod_k exp(p_k A_k), which is not exp(sum_k p_k A_k): L_z and L_y do
not commute. Frequencies start at theta^(-m/M) (theta = 10) on every axis.
head_dim % 3 leftover channels are left unrotated.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.expm import skew_expm
from ..rotation import Rotation
from .base import BlockEncoding, finite_float

__all__ = ["SphericalRoPE", "AXIS_GENERATORS"]

# Rotations about x, y, z.
AXIS_GENERATORS = torch.tensor(
    [
        [[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
        [[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    ]
)
_AXIS_OF_COORDINATE = (2, 1, 0)  # z (yaw), y (pitch), x (roll)


class SphericalRoPE(BlockEncoding):
    name = "spherical"
    commuting = False
    composes_axes = True
    options = ("theta",)
    fixed_block_size = 3
    default_convention = "index"

    def __init__(self, *, theta: float = 10.0, **kwargs):
        super().__init__(**kwargs)
        theta = finite_float("theta", theta, positive=True)
        m = self.num_blocks
        magnitudes = theta ** (-torch.arange(m, dtype=torch.float32) / max(m, 1))
        self.freqs = nn.Parameter(magnitudes.expand(self.param_layers, self.pos_dims, self.param_heads, m).clone())
        self._register_fixed("axis_generators")  # (d, 3, 3)

    def _make_buffer(self, name: str) -> Tensor:
        if name != "axis_generators":
            return super()._make_buffer(name)
        axes = [_AXIS_OF_COORDINATE[k % 3] for k in range(self.pos_dims)]
        return AXIS_GENERATORS[axes].to(torch.get_default_device(), copy=True)  # a device context (meta) applies

    def generator_blocks(self) -> Tensor:
        return self.freqs[..., None, None] * self.axis_generators[None, :, None, None]

    def _compute(self, positions: Tensor) -> Rotation:
        angles = torch.einsum("bnd,ldhm->dlbhnm", positions, self.freqs.to(positions.dtype))
        result = None
        for k in range(self.pos_dims):
            factor = skew_expm(angles[k][..., None, None] * self.axis_generators[k].to(angles.dtype))
            result = factor if result is None else result @ factor
        return Rotation(self.head_dim, blocks=result)

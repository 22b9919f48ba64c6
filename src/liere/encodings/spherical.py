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

Each factor turns one coordinate plane (i, j) of the block by an angle t, so
the product is built column by column without exponentials or matrix products:
right-multiplying M by exp(t L) (L_ji = 1 = -L_ij) replaces columns i and j of
M by (cos t M_i + sin t M_j, cos t M_j - sin t M_i). That is a handful of
elementwise operations on the angles instead of a general 3x3 exponential
(Rodrigues) per factor and a batched 3x3 product per coordinate.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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
# The plane (i, j) each axis generator turns: L[j, i] = 1 and L[i, j] = -1.
_PLANES = tuple(tuple(int(v) for v in reversed((g == 1).nonzero()[0])) for g in AXIS_GENERATORS)


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
        return Rotation(self.head_dim, blocks=compose_axis_rotations(angles, self.pos_dims), orthogonal=True)


def compose_axis_rotations(angles: Tensor, pos_dims: int) -> Tensor:
    """prod_k exp(angles[k] L_axis(k)) as (..., 3, 3), built column by column (see the module docstring).

    Entries that are still exactly 0 or 1 stay Python numbers until the end, so the first factor costs
    nothing but its cosine and sine.
    """
    m = [[1.0 if r == c else 0.0 for c in range(3)] for r in range(3)]
    for k in range(pos_dims):
        i, j = _PLANES[_AXIS_OF_COORDINATE[k % 3]]
        cos, sin = torch.cos(angles[k]), torch.sin(angles[k])
        for row in m:
            mi, mj = row[i], row[j]
            row[i] = _add(_mul(cos, mi), _mul(sin, mj))
            row[j] = _add(_mul(cos, mj), _neg(_mul(sin, mi)))
    shape = angles.shape[1:]
    entries = [e if isinstance(e, Tensor) else angles.new_full(shape, e) for row in m for e in row]
    return torch.stack(entries, -1).unflatten(-1, (3, 3))


def _mul(t: Tensor, e):
    """t * e where e is a tensor or an exact 0 / 1 still held as a number."""
    if isinstance(e, Tensor):
        return t * e
    return t if e == 1.0 else 0.0 if e == 0.0 else t * e


def _add(x, y):
    if isinstance(x, float) and x == 0.0:
        return y
    if isinstance(y, float) and y == 0.0:
        return x
    return x + y


def _neg(x):
    return 0.0 if isinstance(x, float) and x == 0.0 else -x

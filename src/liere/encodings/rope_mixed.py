"""RoPE-Mixed (Heo et al. 2024): learned frequencies that mix the axes.

Channel pair j of head h turns by the angle <f_{h,j}, p>, with a learned
frequency vector f_{h,j} in R^d per pair, head and layer:

    A_k = blockdiag_j(f_{h,j,k} J),   R(p) = blockdiag_j(rot(<f_{h,j}, p>)).

The generators are all diagonal in the same 2x2 planes, so they commute and
the encoding is relative. Initialisation follows RoPE-ViT: the pairs are split
into d groups as in axial RoPE, group k points along direction u_k of a
random rotation (det +1, as RoPE-ViT's code) drawn per head and layer (``rotate=False`` keeps the
coordinate axes), and pair j of a group of m has magnitude theta^(-j/m)
(theta = 10), i.e. 1/10^(4j/D) for 2-D positions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import PlanarEncoding, finite_float
from .rope import split_pairs

__all__ = ["MixedRoPE", "initial_frequencies"]


def _random_rotation(pos_dims: int) -> Tensor:
    """A uniformly random rotation (det +1) of R^d, as RoPE-ViT draws one per head.

    QR of a Gaussian matrix with the signs of diag(R) folded in is Haar on O(d);
    flipping one column when det = -1 keeps it Haar on SO(d). In 2-D the second
    direction is then always the first turned by +90 degrees, as in the paper's code.
    """
    with torch.device("cpu"):  # also under a meta-device context: the draw needs real values
        return _random_rotation_cpu(pos_dims)


def _random_rotation_cpu(pos_dims: int) -> Tensor:
    if pos_dims == 1:
        return torch.ones(1, 1)
    q, r = torch.linalg.qr(torch.randn(pos_dims, pos_dims))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, -1] = -q[:, -1]
    return q


def initial_frequencies(layers: int, pos_dims: int, heads: int, pairs: int, theta: float = 10.0,
                        rotate: bool = True) -> Tensor:
    """RoPE-ViT's initial mixed frequencies (layers, pos_dims, heads, pairs): axis groups, random frames."""
    magnitudes, groups = [], []
    for axis, count in enumerate(split_pairs(pairs, pos_dims)):
        magnitudes.append(theta ** (-torch.arange(count, dtype=torch.float32) / max(count, 1)))
        groups += [axis] * count
    magnitudes = torch.cat(magnitudes)  # (M,)
    freqs = torch.empty(layers, pos_dims, heads, pairs)
    for layer in range(layers):
        for head in range(heads):
            frame = (_random_rotation(pos_dims) if rotate else torch.eye(pos_dims)).to(freqs.device)
            # Column g of the frame is the direction of group g.
            freqs[layer, :, head, :] = frame[:, groups] * magnitudes
    return freqs


class MixedRoPE(PlanarEncoding):
    name = "rope_mixed"
    options = ("theta", "rotate")
    default_convention = "index"

    def __init__(self, *, theta: float = 10.0, rotate: bool = True, **kwargs):
        super().__init__(**kwargs)
        theta = finite_float("theta", theta, positive=True)
        freqs = initial_frequencies(self.param_layers, self.pos_dims, self.param_heads, self.num_blocks, theta, rotate)
        self.freqs = nn.Parameter(freqs)

    def frequencies(self) -> Tensor:
        return self.freqs

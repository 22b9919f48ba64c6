"""Independent references for the core tests: dense float64 matrix exponentials.

Nothing here calls liere's exponentials or apply code: the oracle is built only
from ``pe.generators()`` (dense generators) and ``torch.linalg.matrix_exp``.
"""

from __future__ import annotations

import torch

import liere

# Method lists come from the registry: a new method is tested without being named here.
ROTARY = liere.encodings.rotary_methods()
COMMUTING = [name for name in ROTARY if liere.METHODS[name].commuting]


def make(name: str, *, pos_dims: int = 2, head_dim: int = 16, num_heads: int = 2, block_size=None, **options):
    if name == "rope":
        pos_dims = 1
    if block_size is None and name == "liere":
        block_size = 4
    pe = liere.build(name, pos_dims=pos_dims, head_dim=head_dim, num_heads=num_heads, block_size=block_size, **options)
    if name == "string":  # a generic basis: the Cayley skew starts at 0 (P = I)
        with torch.no_grad():
            pe.skew_upper.normal_(0.0, 0.3)
    return pe


#: The rotary methods with trainable generators (the others are fixed frequencies).
LEARNED = [name for name in ROTARY if any(True for _ in make(name).parameters())]


def oracle_rotation(pe, positions: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """float64 R(p) from the dense generators: (H, N, D, D), or (B, H, N, D, D) for batched positions."""
    gens = pe.generators(layer).detach().double().contiguous()  # (d, H, D, D)
    pos = positions.double()
    batched = pos.ndim == 3
    if not batched:
        pos = pos[None]
    if getattr(pe, "composes_axes", False):
        d, h, dim, _ = gens.shape
        out = torch.eye(dim, dtype=torch.float64).expand(pos.shape[0], h, pos.shape[1], dim, dim).contiguous()
        for k in range(d):
            g = (pos[:, None, :, k, None, None] * gens[k][None, :, None]).contiguous()
            out = out @ torch.linalg.matrix_exp(g)
    else:
        g = torch.einsum("bnd,dhij->bhnij", pos, gens).contiguous()
        out = torch.linalg.matrix_exp(g)
    return out if batched else out[0]


def random_positions(n: int, d: int, scale: float = 1.0, generator=None) -> torch.Tensor:
    return scale * torch.rand(n, d, generator=generator) * 2 - scale

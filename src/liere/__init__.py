"""liere: generalized rotary position encodings, R(p) = exp(sum_k p_k A_k), for inputs of any dimension.

>>> import liere
>>> pe = liere.build("liere", pos_dims=2, head_dim=64, num_heads=6, block_size=8)
>>> R = pe.rotation(liere.positions.grid((8, 8)))   # once per forward pass
>>> q, k = pe(q, k, R)                               # any number of layers
"""

from . import pairing, positions
from .allocator import tune_allocator
from .encodings import ALIASES, METHODS, PositionEncoding, RotaryEncoding, build
from .ops.apply import apply_rotation, apply_rotation_qk
from .rotation import Rotation

__version__ = "0.1.0"

__all__ = [
    "ALIASES",
    "METHODS",
    "PositionEncoding",
    "RotaryEncoding",
    "Rotation",
    "apply_rotation",
    "apply_rotation_qk",
    "build",
    "pairing",
    "positions",
    "tune_allocator",
]

"""One module per method family; ``build`` maps a method name to its class."""

from __future__ import annotations

from .absolute import AbsolutePositionEmbedding, NoPositionEncoding
from .base import BlockEncoding, PlanarEncoding, PositionEncoding, RotaryEncoding
from .comrope import ComRoPEAP, ComRoPELD
from .lie import LieRE
from .rope import AxialRoPE, RoPE1D, VisionLlamaRoPE
from .rope_mixed import MixedRoPE
from .spherical import SphericalRoPE
from .string import CayleySTRING, CirculantSTRING

__all__ = ["METHODS", "ALIASES", "build", "canonical_name", *(
    "AbsolutePositionEmbedding NoPositionEncoding BlockEncoding PlanarEncoding PositionEncoding RotaryEncoding "
    "ComRoPEAP ComRoPELD LieRE AxialRoPE RoPE1D MixedRoPE SphericalRoPE VisionLlamaRoPE CayleySTRING CirculantSTRING"
).split()]

METHODS: dict[str, type[PositionEncoding]] = {
    "liere": LieRE,
    "comrope_ap": ComRoPEAP,
    "comrope_ld": ComRoPELD,
    "rope_mixed": MixedRoPE,
    "string": CayleySTRING,
    "string_circulant": CirculantSTRING,
    "rope_axial": AxialRoPE,
    "visionllama": VisionLlamaRoPE,
    "spherical": SphericalRoPE,
    "rope": RoPE1D,
    "absolute": AbsolutePositionEmbedding,
    "none": NoPositionEncoding,
}
ALIASES = {"rope_vit": "rope_axial", "liere_dense": "liere"}
# Block size used when ``block_size`` is left unset (None: head_dim, the dense case).
DEFAULT_BLOCK_SIZE = {"liere": None, "comrope_ap": 4, "comrope_ld": 4, "rope_mixed": 2, "string": 2, "string_circulant": 2, "rope_axial": 2, "visionllama": 2, "rope": 2,
                      "spherical": 3}


def canonical_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name: expected a method name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        known = ", ".join([*METHODS, *ALIASES])
        raise ValueError(f"name: unknown position encoding {name!r}; known methods: {known}")
    return key


def build(
    name: str, *, pos_dims: int, head_dim: int, num_heads: int, block_size: int | None = None, **options
) -> PositionEncoding:
    """Build a position encoding by name.

    Common options: ``num_layers`` and ``share_layers`` (one set of generators
    per layer, or one shared), ``share_heads``, ``num_prefix_tokens`` and
    ``prefix_position`` (CLS/register tokens: identity rotation, or a chosen
    position), ``layout`` ("bhnd" or "bnhd"), ``cache`` (eval-mode cache).
    Method options: ``theta`` (rope, rope_axial, rope_mixed, string*, spherical),
    ``rotary_dim`` (every rotary method: rotate only the first rotary_dim channels of each head),
    ``rotate`` (rope_mixed, string*), ``init_std`` (comrope_*), ``init_scale`` (liere),
    ``grid_shape``, ``embed_dim`` and ``kind`` (absolute).
    """
    key = canonical_name(name)
    cls = METHODS[key]
    if key in ("absolute", "none"):
        return cls(pos_dims=pos_dims, head_dim=head_dim, num_heads=num_heads, block_size=block_size, **options)
    if block_size is None:
        block_size = DEFAULT_BLOCK_SIZE[key] or options.get("rotary_dim") or head_dim
    return cls(pos_dims=pos_dims, head_dim=head_dim, num_heads=num_heads, block_size=block_size, **options)

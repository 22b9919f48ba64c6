"""One module per method family; ``registry`` names them, ``factory.build`` builds one by name."""

from __future__ import annotations

from .absolute import AbsolutePositionEmbedding, NoPositionEncoding
from .base import BlockEncoding, PlanarEncoding, PositionEncoding, RotaryEncoding
from .comrope import ComRoPEAP, ComRoPELD
from .factory import build
from .lie import LieREDense, LieRE
from .registry import ALIASES, METHODS, canonical_name, method_class, rotary_methods
from .rope import AxialRoPE, RoPE1D, VisionLlamaRoPE
from .rope_mixed import MixedRoPE
from .spherical import SphericalRoPE
from .string import CayleySTRING, CirculantSTRING

__all__ = ["METHODS", "ALIASES", "build", "canonical_name", "method_class", "rotary_methods", *(
    "AbsolutePositionEmbedding NoPositionEncoding BlockEncoding PlanarEncoding PositionEncoding RotaryEncoding "
    "ComRoPEAP ComRoPELD LieRE LieREDense AxialRoPE RoPE1D MixedRoPE SphericalRoPE VisionLlamaRoPE CayleySTRING CirculantSTRING"
).split()]

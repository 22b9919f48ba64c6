"""Which methods there are, under which names: read from each class's own attributes, kept nowhere else.

A method is one ``PositionEncoding`` subclass in ``CLASSES``; its ``name``, ``aliases``,
``options``, ``default_block_size`` and ``fixed_block_size`` are class attributes
(see ``liere.encodings.base``). ``build`` (``liere.encodings.factory``), the oracle
tests, the CLI's help and the training config's checks all derive from here, so a
new method is its file plus one line in ``CLASSES``.
"""

from __future__ import annotations

from .absolute import AbsolutePositionEmbedding, NoPositionEncoding
from .base import PositionEncoding
from .comrope import ComRoPEAP, ComRoPELD
from .lie import LieREDense, LieRE
from .rope import AxialRoPE, RoPE1D, VisionLlamaRoPE
from .rope_mixed import MixedRoPE
from .spherical import SphericalRoPE
from .string import CayleySTRING, CirculantSTRING

__all__ = ["CLASSES", "METHODS", "ALIASES", "canonical_name", "method_class", "rotary_methods"]

#: Every method, in the order help texts list them.
CLASSES: tuple[type[PositionEncoding], ...] = (
    LieRE, LieREDense, ComRoPEAP, ComRoPELD, MixedRoPE, CayleySTRING, CirculantSTRING, AxialRoPE, VisionLlamaRoPE, SphericalRoPE, RoPE1D,
    AbsolutePositionEmbedding, NoPositionEncoding,
)
METHODS: dict[str, type[PositionEncoding]] = {cls.name: cls for cls in CLASSES}
ALIASES: dict[str, str] = {alias: cls.name for cls in CLASSES for alias in cls.aliases}


def canonical_name(name: str) -> str:
    """The ``build`` name of a method, alias or spelling (case, '-' for '_'); ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"name: expected a method name (str), got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        known = ", ".join([*METHODS, *ALIASES])
        raise ValueError(f"name: unknown position encoding {name!r}; known methods: {known}")
    return key


def method_class(name: str) -> type[PositionEncoding]:
    return METHODS[canonical_name(name)]


def rotary_methods() -> list[str]:
    return [name for name, cls in METHODS.items() if cls.rotary]

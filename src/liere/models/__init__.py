"""Models with a pluggable position encoding: ``ViT`` (2-D patches, 3-D tubelets) and a causal ``TextTransformer``.

>>> from liere.models import build_model
>>> vit = build_model("vit", "micro", "liere", input_shape=(32, 32), patch_size=4, num_classes=2, block_size=8)
>>> lm = build_model("lm", "micro", "rope", context_length=128)

Named sizes (``SIZES``): ``micro`` and ``nano`` run on a laptop CPU; ``tiny``, ``base``
and ``large`` are the LieRE paper's ViTs (22M, 86M and 304M parameters at
ImageNet's 224 / 16; the paper calls the 384-wide model "tiny", DeiT calls it "small").
"""

from __future__ import annotations

from torch import nn

from .attention import Attention, Block
from .lm import TextTransformer
from .vit import PatchEmbed, ViT

__all__ = ["SIZES", "KINDS", "build_model", "ViT", "TextTransformer", "PatchEmbed", "Attention", "Block"]

#: name -> (dim, depth, num_heads)
SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (64, 4, 4),
    "nano": (128, 6, 4),
    "tiny": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
KINDS = ("vit", "lm")


def size_spec(size: str) -> tuple[int, int, int]:
    if size not in SIZES:
        raise ValueError(f"size: unknown model size {size!r}; known sizes: {', '.join(SIZES)}")
    return SIZES[size]


def build_model(kind: str, size: str = "micro", method: str = "liere", **options) -> nn.Module:
    """Build a ``ViT`` (kind "vit") or ``TextTransformer`` (kind "lm") of a named size.

    ``options`` go to the model (``input_shape``, ``patch_size``, ``num_classes``, ``pool``,
    ``num_registers``, ``block_size``, ``share_layers``, ``convention``, ``vocab_size``,
    ``context_length``, ...); ``dim``, ``depth`` and ``num_heads`` override the named size.
    """
    dim, depth, heads = size_spec(size)
    options = {"dim": dim, "depth": depth, "num_heads": heads, **options}
    if kind == "vit":
        return ViT(method=method, **options)
    if kind == "lm":
        return TextTransformer(method=method, **options)
    raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")

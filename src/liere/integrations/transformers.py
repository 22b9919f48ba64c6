"""Switch a Hugging Face vision transformer (ViT, DINOv2, DINOv2 with registers) to a rotary encoding.

>>> from transformers import ViTConfig, ViTForImageClassification
>>> import liere.integrations.transformers as lhf
>>> model = ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_labels=4))
>>> model = lhf.convert(model, "liere", block_size=8, remove_abs_pos=True)
>>> model(torch.randn(2, 3, 48, 40)).logits          # any size divisible by the patch size

What ``convert`` does, in place (as ``liere.integrations.timm.convert``):

* one encoding for the model (``model.liere_pe``, a ``HFRotary``), with one set of
  generators per layer unless ``share_layers=True``, and the CLS and register
  tokens as prefix tokens (identity rotation);
* a forward pre-hook on the embeddings turns the image size into the patch grid,
  its positions and the rotation R(p): once per forward pass; it also passes
  ``interpolate_pos_encoding=True`` so the model accepts other image sizes;
* forward hooks on every attention's query and key projections (``q_proj`` /
  ``k_proj``, or ``query`` / ``key`` in older transformers) rotate their outputs
  (B, N, H*D) head by head, so q and k reach the attention kernel rotated,
  whichever attention implementation (eager, SDPA) the config picks. The model's
  modules and state-dict keys are unchanged apart from ``liere_pe``;
* ``remove_abs_pos=True`` zeroes the absolute table and freezes it (the key stays,
  so Hugging Face checkpoints still load).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from .. import positions as _positions
from ..encodings import METHODS, build, canonical_name
from ..ops.apply import apply_rotation
from ..pairing import from_interleaved, to_interleaved
from ..rotation import Rotation

__all__ = ["convert", "HFRotary"]

_QK_NAMES = (("q_proj", "k_proj"), ("query", "key"))


class HFRotary(nn.Module):
    """The encoding of a converted Hugging Face model and the rotation of the current forward pass."""

    def __init__(self, pe: nn.Module, convention: str, train_grid: tuple[int, int], patch_size: tuple[int, int]):
        super().__init__()
        self.pe = pe
        self.convention = convention
        self.train_grid = tuple(train_grid)
        self.patch_size = tuple(patch_size)
        self.rotation: Rotation | None = None

    def begin(self, embeddings: nn.Module, args, kwargs):
        pixels = args[0] if args else kwargs["pixel_values"]
        h, w = pixels.shape[-2], pixels.shape[-1]
        grid = (h // self.patch_size[0], w // self.patch_size[1])
        train = self.train_grid if self.convention == "liere" else None
        positions = _positions.grid(grid, self.convention, train_shape=train, device=pixels.device)
        self.rotation = self.pe.rotation(positions)
        if "interpolate_pos_encoding" in kwargs or _takes_interpolate(embeddings):
            kwargs = {**kwargs, "interpolate_pos_encoding": True}
        return args, kwargs

    def rotate(self, layer: int, module: nn.Module, args, x: Tensor) -> Tensor:
        """Forward hook of a query/key projection: x (B, N, H*D) rotated per head by layer's R."""
        if self.rotation is None:
            raise RuntimeError("convert: no rotation for this pass; call the converted model, not a layer on its own")
        heads = x.unflatten(-1, (self.pe.num_heads, self.pe.head_dim))  # (B, N, H, D)
        rotation = self.rotation.layer(layer)
        if self.pe.pairing == "half":
            r = self.pe.rotary_dim
            heads = from_interleaved(apply_rotation(to_interleaved(heads, r), rotation, layout="bnhd"), r)
        else:
            heads = apply_rotation(heads, rotation, layout="bnhd")
        return heads.flatten(-2).to(x.dtype)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["rotation"] = None
        return state

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}, train_grid={self.train_grid}, patch_size={self.patch_size}"


def _takes_interpolate(embeddings: nn.Module) -> bool:
    import inspect

    return "interpolate_pos_encoding" in inspect.signature(embeddings.forward).parameters


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _find_embeddings(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if hasattr(module, "patch_embeddings") and hasattr(module, "cls_token"):
            return module
    raise TypeError(f"convert: expected a Hugging Face ViT-like model (embeddings with patch_embeddings and "
                    f"cls_token), got {type(model).__name__}")


def _find_attentions(model: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(query, key) projections of every attention layer, in order."""
    found = []
    for module in model.modules():
        for q_name, k_name in _QK_NAMES:
            q, k = getattr(module, q_name, None), getattr(module, k_name, None)
            if isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
                found.append((q, k))
                break
    if not found:
        raise TypeError("convert: found no attention with query/key projections (q_proj/k_proj or query/key)")
    return found


def convert(
    model: nn.Module,
    method: str = "liere",
    *,
    remove_abs_pos: bool = False,
    convention: str | None = None,
    share_layers: bool = False,
    **options,
) -> nn.Module:
    """Switch a Hugging Face ViT / DINOv2's attention to the rotary ``method``, in place; returns the model.

    method: any rotary name of ``liere.build``. remove_abs_pos: zero and freeze the absolute table.
    convention: position convention of the patch grid (default: the method's own).
    share_layers, options: passed to ``liere.build`` (block_size, share_heads, pairing, theta, ...).
    """
    if getattr(model, "liere_pe", None) is not None:
        raise ValueError("convert: this model is already converted")
    if not METHODS[canonical_name(method)].rotary:
        raise ValueError(f"convert: {method!r} is not a rotary method; the model's own table is the absolute one")
    embeddings = _find_embeddings(model)
    attentions = _find_attentions(model)
    config = getattr(model, "config", None)
    heads = int(getattr(config, "num_attention_heads"))
    hidden = attentions[0][0].out_features
    if hidden % heads:
        raise TypeError(f"convert: query width {hidden} is not a multiple of {heads} heads")
    head_dim = hidden // heads
    registers = getattr(embeddings, "register_tokens", None)
    num_prefix = 1 + (int(registers.shape[1]) if isinstance(registers, Tensor) else 0)
    patch_size = _pair(getattr(embeddings, "patch_size", None) or config.patch_size)
    image_size = _pair(config.image_size)
    train_grid = (image_size[0] // patch_size[0], image_size[1] // patch_size[1])
    pe = build(method, pos_dims=2, head_dim=head_dim, num_heads=heads, num_layers=len(attentions),
               share_layers=share_layers, num_prefix_tokens=num_prefix, **options)
    context = HFRotary(pe, convention or pe.default_convention, train_grid, patch_size)
    model.liere_pe = context
    for i, (q, k) in enumerate(attentions):
        q.register_forward_hook(partial(context.rotate, i))
        k.register_forward_hook(partial(context.rotate, i))
    embeddings.register_forward_pre_hook(context.begin, with_kwargs=True)
    if remove_abs_pos and isinstance(getattr(embeddings, "position_embeddings", None), nn.Parameter):
        with torch.no_grad():
            embeddings.position_embeddings.zero_()
        embeddings.position_embeddings.requires_grad_(False)
    return model

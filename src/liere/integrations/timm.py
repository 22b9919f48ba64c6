"""Switch a timm ``VisionTransformer`` to a rotary position encoding.

>>> import timm, liere.integrations.timm as lt
>>> model = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True)
>>> model = lt.convert(model, "liere", block_size=8, remove_abs_pos=True)
>>> model(torch.randn(2, 3, 224, 224)); model(torch.randn(2, 3, 160, 288))   # any size divisible by 16

What ``convert`` does, in place:

* builds one encoding for the whole model (``model.liere_pe``, a ``TimmRotary``),
  with one set of generators per block (``num_layers = depth``) unless
  ``share_layers=True``, and the model's CLS/register tokens
  (``model.num_prefix_tokens``) as prefix tokens: identity rotation;
* before the patch embedding runs, a forward pre-hook turns the image size into
  the patch grid (h, w), its positions ``liere.positions.grid((h, w), convention)``
  and the rotation R(p): once per forward pass, shared by every block;
* replaces each block's ``attn`` by a ``RotaryAttention`` that takes over the
  timm module's children (``qkv``, ``q_norm``, ``k_norm``, ``proj``, ...), so the
  state-dict keys of the blocks are unchanged, and computes

      q, k, v = qkv(x);  q, k = R_i q, R_i k;  x = proj(SDPA(q, k, v))

  with R_i block i's rotation;
* with ``remove_abs_pos=True`` drops the learned absolute table
  (``model.pos_embed = None``), so the model is position-aware through the
  rotation alone;
* extends the model's ``no_weight_decay()`` (the names timm's optimizer factory,
  ``timm.optim.create_optimizer_v2``, keeps out of weight decay) with the
  encoding's parameters, as the encoding declares them.

Convert a pretrained model after loading its weights: the attention weights are
reused as they are. The converted model's own state dict round-trips through
``load_state_dict`` on another model converted with the same arguments.

**Models that already have RoPE** (timm's ``Eva`` family: RoPE-ViT axial and mixed,
EVA-02, the SBB ``vit_*_rope_*`` models, DINOv3) are read by
``liere.integrations.timm_rope``: their frequencies, pairing convention and
coordinate grid are carried over, so ``convert(model)`` (the equivalent liere
method: ``rope_mixed`` for learned frequencies, ``rope_axial`` for fixed ones) gives
the same outputs as the timm model, and ``convert(model, "liere", block_size=8)``
starts LieRE from the pretrained rotation (``comrope_ld`` too). There the
attention modules stay timm's own (same keys); forward hooks on their ``q_norm``
and ``k_norm`` rotate q and k where timm applied its RoPE, and ``model.rope`` is
removed.
"""

from __future__ import annotations

from functools import partial

import torch.nn.functional as F
from torch import Tensor, nn

from functools import partial

import torch

from .. import positions as _positions
from ..encodings import build, canonical_name, method_class
from ..ops.apply import apply_rotation, apply_rotation_qk
from ..pairing import from_interleaved, to_interleaved
from ..rotation import Rotation
from .timm_rope import TimmGrid, init_from_frequencies, read_rope

__all__ = ["convert", "RotaryAttention", "TimmRotary", "patch_grid"]


def patch_grid(patch_embed: nn.Module, image_size) -> tuple[int, int]:
    """The (h, w) patch grid a timm ``PatchEmbed`` produces for an image of ``image_size`` (H, W)."""
    if hasattr(patch_embed, "dynamic_feat_size") and not getattr(patch_embed, "strict_img_size", False):
        size = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in image_size[:2])  # symbolic in export
        h, w = patch_embed.dynamic_feat_size(size)
        return tuple(g if isinstance(g, torch.SymInt) else int(g) for g in (h, w))
    return tuple(int(g) for g in patch_embed.grid_size)


class TimmRotary(nn.Module):
    """The encoding of a converted timm model and the rotation of the current forward pass.

    ``begin`` runs as a forward pre-hook of ``model.patch_embed``: it computes
    the rotation for the input's patch grid, and every ``RotaryAttention`` reads
    it. It is kept until the next pass: activation checkpointing recomputes the
    blocks during the backward pass and needs it then.
    """

    def __init__(self, pe: nn.Module, convention: str, train_grid: tuple[int, int], timm_grid: TimmGrid | None = None):
        super().__init__()
        self.pe = pe
        self.convention = convention
        self.train_grid = tuple(train_grid)
        self.timm_grid = timm_grid  # the pretrained RoPE's own coordinates (convention "timm")
        self.rotation: Rotation | None = None

    def positions(self, grid: tuple[int, int], device=None) -> Tensor:
        if self.timm_grid is not None:
            return self.timm_grid.positions(grid, device, training=self.training)
        train = self.train_grid if self.convention == "liere" else None
        return _positions.grid(grid, self.convention, train_shape=train, device=device)

    def rotate(self, layer: int, module: nn.Module, args, x: Tensor) -> Tensor:
        """Forward hook of a timm attention's ``q_norm`` / ``k_norm``: x (B, H, N, D) rotated by layer's R."""
        if self.rotation is None:
            raise RuntimeError("convert: no rotation for this pass; call the converted model, not a block on its own")
        rotation = self.rotation.layer(layer)
        if self.pe.pairing == "half":
            r = self.pe.rotary_dim
            return from_interleaved(apply_rotation(to_interleaved(x, r), rotation), r).to(x.dtype)
        return apply_rotation(x, rotation).to(x.dtype)

    def begin(self, patch_embed: nn.Module, args) -> None:
        images = args[0]
        grid = patch_grid(patch_embed, images.shape[-2:])
        self.rotation = self.pe.rotation(self.positions(grid, images.device))

    def no_weight_decay(self) -> set[str]:
        return {f"pe.{name}" for name in self.pe.no_weight_decay()}

    def __getstate__(self):
        # Copies and pickles start without the last pass's rotation (part of an autograd graph).
        state = self.__dict__.copy()
        state["rotation"] = None
        return state

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}, train_grid={self.train_grid}"


class RotaryAttention(nn.Module):
    """timm ``Attention`` with q and k rotated by the model's current rotation (same children, same keys)."""

    def __init__(self, attn: nn.Module, context: TimmRotary, layer: int):
        super().__init__()
        for name in ("qkv", "proj"):
            if not isinstance(getattr(attn, name, None), nn.Module):
                raise TypeError(f"convert: block attention {type(attn).__name__} has no '{name}' layer; "
                                f"only timm's fused-qkv Attention is supported")
        if next(attn.parameters(recurse=False), None) is not None:
            raise TypeError(f"convert: {type(attn).__name__} has parameters outside its layers; not supported")
        self.num_heads = int(attn.num_heads)
        self.head_dim = int(getattr(attn, "head_dim", attn.qkv.out_features // (3 * self.num_heads)))
        self.attn_dim = self.num_heads * self.head_dim
        self.scale = float(getattr(attn, "scale", self.head_dim**-0.5))
        self.gate = None
        for name, child in attn.named_children():  # qkv, q_norm, k_norm, attn_drop, norm, gate, proj, proj_drop
            self.add_module(name, child)
        for name in ("q_norm", "k_norm", "norm", "attn_drop", "proj_drop"):
            if not hasattr(self, name):
                self.add_module(name, nn.Identity())
        self.layer = layer
        # Not a child: the encoding is registered once, on the model.
        object.__setattr__(self, "context", context)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        b, n, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        rotation = self.context.rotation
        if rotation is None:
            raise RuntimeError("RotaryAttention: no rotation for this pass; call the converted model "
                               "(or its forward_features), not a block on its own")
        rotation = rotation.layer(self.layer)
        if self.context.pe.pairing == "half":  # rotate in the interleaved basis (liere.pairing)
            r = self.context.pe.rotary_dim
            q, k = apply_rotation_qk(to_interleaved(q, r), to_interleaved(k, r), rotation)
            q, k = from_interleaved(q, r), from_interleaved(k, r)
        else:
            q, k = apply_rotation_qk(q, k, rotation)
        dropout = self.attn_drop.p if self.training and isinstance(self.attn_drop, nn.Dropout) else 0.0
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout, is_causal=is_causal,
                                           scale=self.scale)
        x = self.norm(x.transpose(1, 2).reshape(b, n, self.attn_dim))
        if gate is not None:
            x = x * gate
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, head_dim={self.head_dim}, layer={self.layer}"


def _no_weight_decay(names: frozenset[str]) -> set[str]:
    return set(names)


def _make_dynamic(model: nn.Module) -> None:
    """What timm's ``dynamic_img_size=True`` sets up at construction, for a model built without it."""
    if getattr(model, "dynamic_img_size", False):
        return
    model.dynamic_img_size = True
    pe = model.patch_embed
    pe.strict_img_size = False
    if getattr(pe, "flatten", False):
        from timm.layers import Format  # only reached with timm installed

        pe.flatten = False
        pe.output_fmt = Format.NHWC


def convert(
    model: nn.Module,
    method: str | None = None,
    *,
    remove_abs_pos: bool = False,
    convention: str | None = None,
    dynamic_img_size: bool = True,
    share_layers: bool = False,
    pretrained_rope: str = "carry",
    **options,
) -> nn.Module:
    """Switch a timm ViT's attention to the rotary ``method``, in place; returns the model.

    method: any rotary name of ``liere.build`` ("liere", "comrope_ap", "comrope_ld", "rope_mixed",
        "rope_axial", "spherical"). Default: "liere" for a ViT without RoPE; for one with RoPE, the
        equivalent liere method ("rope_mixed" or "rope_axial"), which gives the same outputs.
    remove_abs_pos: drop the absolute position table (``model.pos_embed``).
    convention: position convention of the patch grid (``liere.positions``); default: the method's own,
        or for a model with RoPE the pretrained RoPE's own coordinates.
    dynamic_img_size: accept any image size divisible by the patch size (as timm's option of that name).
    pretrained_rope: for a model with RoPE, "carry" starts ``method`` from its rotation (an exact start:
        ``liere.integrations.timm_rope.EXACT_START``) and keeps its pairing and coordinates; "discard"
        builds ``method`` fresh (liere's interleaved pairs and conventions).
    share_layers, options: passed to ``liere.build`` (block_size, share_heads, theta, ...).
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None or not hasattr(model, "patch_embed") or not hasattr(model, "num_prefix_tokens"):
        raise TypeError(f"convert: expected a timm VisionTransformer, got {type(model).__name__}")
    if getattr(model, "liere_pe", None) is not None:
        raise ValueError("convert: this model is already converted")
    if pretrained_rope not in ("carry", "discard"):
        raise ValueError(f"convert: pretrained_rope: expected 'carry' or 'discard', got {pretrained_rope!r}")
    if hasattr(model, "rope"):  # timm's Eva family (attention takes rope=), with or without a RoPE
        return _convert_rope_model(model, method, remove_abs_pos, convention, dynamic_img_size, share_layers,
                                   pretrained_rope, options)
    method = "liere" if method is None else method
    if not method_class(method).rotary:
        raise ValueError(f"convert: {method!r} is not a rotary method; timm's own pos_embed is the absolute baseline")
    for block in blocks:  # check every block before changing any
        attn = getattr(block, "attn", None)
        if not all(isinstance(getattr(attn, name, None), nn.Module) for name in ("qkv", "proj")):
            raise TypeError(f"convert: block attention {type(attn).__name__} has no fused 'qkv' and 'proj' layers; "
                            f"only timm's Attention is supported")
    first = blocks[0].attn
    heads = int(first.num_heads)
    head_dim = int(getattr(first, "head_dim", first.qkv.out_features // (3 * heads)))
    pe = build(method, pos_dims=2, head_dim=head_dim, num_heads=heads,
               num_layers=len(blocks), share_layers=share_layers,
               num_prefix_tokens=int(model.num_prefix_tokens), **options)
    train_grid = tuple(int(g) for g in model.patch_embed.grid_size)
    context = TimmRotary(pe, convention or pe.default_convention, train_grid)
    model.liere_pe = context
    for i, block in enumerate(blocks):
        block.attn = RotaryAttention(block.attn, context, i)
    if dynamic_img_size:
        _make_dynamic(model)
    if remove_abs_pos:
        model.pos_embed = None
    _declare_no_weight_decay(model, context)
    model.patch_embed.register_forward_pre_hook(context.begin)
    return model


def _declare_no_weight_decay(model: nn.Module, context: TimmRotary) -> None:
    """timm's optimizer factory reads model.no_weight_decay(): add the encoding's names (a partial, so the
    model still pickles and deep-copies)."""
    declared = model.no_weight_decay() if callable(getattr(model, "no_weight_decay", None)) else set()
    names = set(declared) | {f"liere_pe.{name}" for name in context.no_weight_decay()}
    model.no_weight_decay = partial(_no_weight_decay, frozenset(names))


def _convert_rope_model(model, method, remove_abs_pos, convention, dynamic_img_size, share_layers, pretrained_rope,
                        options) -> nn.Module:
    """A timm model whose attention takes ``rope=``: hooks on q_norm / k_norm, ``model.rope`` removed."""
    blocks = model.blocks
    first = blocks[0].attn
    heads, head_dim = int(first.num_heads), int(first.head_dim)
    for block in blocks:
        attn = getattr(block, "attn", None)
        if not all(isinstance(getattr(attn, name, None), nn.Module) for name in ("q_norm", "k_norm")):
            raise TypeError(f"convert: {type(attn).__name__} has no q_norm / k_norm to rotate after; not supported")
        if int(getattr(attn, "num_kv_heads", heads)) != heads:
            raise TypeError("convert: grouped-query attention (num_kv_heads < num_heads) is not supported")
    spec = read_rope(model, head_dim)
    carry = pretrained_rope == "carry" and spec is not None
    method = canonical_name(method or (spec.equivalent if spec is not None else "liere"))
    if not method_class(method).rotary:
        raise ValueError(f"convert: {method!r} is not a rotary method")
    if carry and convention is not None:
        raise ValueError("convert: convention applies with pretrained_rope='discard'; a carried RoPE keeps "
                         "its own coordinates")
    if spec is None and method in ("rope_axial", "rope_mixed"):
        options.setdefault("block_size", 2)
    if carry:
        options.setdefault("pairing", spec.pairing)
        if method in ("rope_axial", "rope_mixed"):
            options.setdefault("block_size", 2)
    pe = build(method, pos_dims=2, head_dim=head_dim, num_heads=heads, num_layers=len(blocks),
               share_layers=share_layers, num_prefix_tokens=int(model.num_prefix_tokens), **options)
    if carry:
        init_from_frequencies(pe, spec.freqs)
    train_grid = tuple(int(g) for g in model.patch_embed.grid_size)
    context = TimmRotary(pe, "timm" if carry else (convention or pe.default_convention), train_grid,
                         spec.grid if carry else None)
    model.liere_pe = context
    for i, block in enumerate(blocks):
        block.attn.q_norm.register_forward_hook(partial(context.rotate, i))
        block.attn.k_norm.register_forward_hook(partial(context.rotate, i))
    model.rope = None
    model.rope_mixed = False
    if dynamic_img_size:
        _make_dynamic(model)
    if remove_abs_pos:
        model.pos_embed = None
    _declare_no_weight_decay(model, context)
    model.patch_embed.register_forward_pre_hook(context.begin)
    return model

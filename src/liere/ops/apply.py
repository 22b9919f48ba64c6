"""Apply a ``Rotation`` to queries or keys without building head_dim x head_dim matrices.

x' = R(p) x for every token, head and sample: the planar form (b = 2) is two
multiply-adds per channel pair, the block form one small matmul per block.
Math is in float32 and the result comes back in x's dtype, so half-precision
inputs go straight into SDPA. On CUDA a fused Triton kernel is used when
available (``liere.ops.triton_apply``); everywhere else, and while tracing for
``torch.compile`` or export, the eager path below runs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..rotation import Rotation

__all__ = ["apply_rotation", "apply_rotation_qk", "LAYOUTS"]

LAYOUTS = ("bhnd", "bnhd")


def _token_head_axes(layout: str) -> tuple[int, int]:
    if layout == "bhnd":
        return 2, 1
    if layout == "bnhd":
        return 1, 2
    raise ValueError(f"layout: expected one of {LAYOUTS}, got {layout!r}")


def check_rotation_fits(x: Tensor, rotation: Rotation, layout: str, name: str = "x") -> None:
    """Raise a ValueError naming ``name`` when x cannot be rotated by ``rotation``."""
    token_axis, head_axis = _token_head_axes(layout)
    if x.ndim != 4:
        shape = "(B, H, N, D)" if layout == "bhnd" else "(B, N, H, D)"
        raise ValueError(f"{name}: expected a 4-D tensor {shape} for layout={layout!r}, got shape {tuple(x.shape)}")
    batch, heads, tokens, dim = x.shape[0], x.shape[head_axis], x.shape[token_axis], x.shape[3]
    if dim != rotation.head_dim:
        raise ValueError(f"{name}: last dimension is {dim} but the rotation is for head_dim={rotation.head_dim}")
    if tokens != rotation.num_tokens:
        raise ValueError(
            f"{name}: has N={tokens} tokens on its token axis ({token_axis}, layout={layout!r}) but the rotation "
            f"covers {rotation.num_tokens} tokens (positions plus prefix tokens); check the positions, "
            f"num_prefix_tokens and the layout"
        )
    if rotation.num_heads not in (1, heads):
        raise ValueError(
            f"{name}: has H={heads} heads on axis {head_axis} (layout={layout!r}) but the rotation has "
            f"{rotation.num_heads}; check num_heads and the layout"
        )
    if rotation.batch_size not in (1, batch):
        raise ValueError(f"{name}: batch is {batch} but the per-sample positions have batch {rotation.batch_size}")


def _math_dtype(x: Tensor, rot: Tensor) -> torch.dtype:
    """float32 at least; float64 when x or the rotation is float64 (gradcheck)."""
    return torch.promote_types(torch.promote_types(x.dtype, rot.dtype), torch.float32)


def _planar(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    pairs = cos.shape[-1]
    xr = x[..., : 2 * pairs].to(_math_dtype(x, cos)).unflatten(-1, (pairs, 2))
    x0, x1 = xr[..., 0], xr[..., 1]
    out = torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), -1).flatten(-2)
    return out


def _blocks(x: Tensor, blocks: Tensor) -> Tensor:
    m, b = blocks.shape[-3], blocks.shape[-1]
    xr = x[..., : m * b].to(_math_dtype(x, blocks)).unflatten(-1, (m, b))
    return torch.einsum("...mij,...mj->...mi", blocks, xr).flatten(-2)


def _rotate_eager(x: Tensor, rotation: Rotation, layout: str) -> Tensor:
    data = (rotation.cos, rotation.sin) if rotation.is_planar else (rotation.blocks,)
    # Drop the layer axis; for (B, N, H, D) swap the head and token axes of the rotation.
    data = [t[0] for t in data]
    if layout == "bnhd":
        data = [t.transpose(1, 2) for t in data]
    out = _planar(x, *data) if rotation.is_planar else _blocks(x, *data)
    rotated = rotation.num_blocks * rotation.block_size
    if rotated < x.shape[-1]:
        out = torch.cat((out, x[..., rotated:].to(out.dtype)), -1)
    return out.to(x.dtype)


def _use_triton(x: Tensor) -> bool:
    if not x.is_cuda or torch.compiler.is_compiling():
        return False
    from . import triton_apply

    return triton_apply.available()


def apply_rotation(x: Tensor, rotation: Rotation, *, layout: str = "bhnd", layer: int | None = None) -> Tensor:
    """Rotate x (q, k, or any subset of heads/tokens) by ``rotation``.

    x: (B, H, N, D) for ``layout="bhnd"`` or (B, N, H, D) for ``"bnhd"``.
    ``layer`` selects one layer's rotation when layers have their own
    generators; it may be omitted when the rotation has a single layer.
    """
    if not isinstance(rotation, Rotation):
        raise TypeError(f"rotation: expected a liere.Rotation, got {type(rotation).__name__}")
    if layer is None:
        if rotation.num_layers != 1:
            raise ValueError(f"layer: the rotation holds {rotation.num_layers} layers; pass layer=i")
    else:
        rotation = rotation.layer(layer)
    check_rotation_fits(x, rotation, layout)
    if _use_triton(x):
        from .triton_apply import rotate_triton

        return rotate_triton(x, rotation, layout)
    return _rotate_eager(x, rotation, layout)


def apply_rotation_qk(q: Tensor, k: Tensor, rotation: Rotation, *, layout: str = "bhnd", layer: int | None = None):
    """Rotate q and k by the same rotation (one fused pass on CUDA)."""
    if not isinstance(q, Tensor) or not isinstance(k, Tensor):
        raise TypeError("q, k: expected tensors")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if layer is not None:
        rotation = rotation.layer(layer)
    elif rotation.num_layers != 1:
        raise ValueError(f"layer: the rotation holds {rotation.num_layers} layers; pass layer=i")
    check_rotation_fits(q, rotation, layout, "q")
    if _use_triton(q):
        from .triton_apply import rotate_qk_triton

        return rotate_qk_triton(q, k, rotation, layout)
    return _rotate_eager(q, rotation, layout), _rotate_eager(k, rotation, layout)

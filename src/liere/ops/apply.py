"""Apply a ``Rotation`` to queries or keys without building head_dim x head_dim matrices.

x' = R(p) x for every token, head and sample: the planar form (b = 2) is two
multiply-adds per channel pair, the block form one small matmul per block.
Math is in float32 and the result comes back in x's dtype, so half-precision
inputs go straight into SDPA. Three implementations, picked per call:

* CUDA with Triton: one fused kernel reads q and k once and writes them once
  (``liere.ops.triton_apply``).
* CPU, blocks: a C++ kernel does the same in one pass over q and k
  (``liere.ops.cpu_kernel``, built on first use; the packed ``bmm`` below
  where it cannot be built).
* Eager elsewhere (``_fast_*``):
  - planar: channel pairs (2m, 2m+1) viewed as complex numbers, so the
    rotation is one complex multiply per pair, x' = x * exp(i theta), forward
    and backward each one pass over x (autograd of the real form costs ~5x);
  - blocks: q and k are packed, with the rotation's broadcast axes (batch, and
    heads when shared) next to the block channels, into one (R, rows, b)
    buffer, so one ``bmm`` with R = (heads x tokens x blocks) small matrices
    rotates every sample of q and k: x'_row = x_row R^T. The backward is two
    more ``bmm``: g_x = g R and g_R = sum_rows g x^T.
* Traceable (``_rotate_eager``): no complex tensors, no custom autograd, for
  ``torch.compile``, ``torch.jit`` tracing and ONNX export; under ``torch.compile``
  on the CPU, custom operators instead: the complex multiply (planar) and the
  C++ kernel (blocks).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._compat import exporting, tracing
from . import cpu_kernel
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
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor (rotating {x.dtype} values would truncate them), "
                        f"got dtype {x.dtype}")
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
    # A broadcasting matmul, not einsum: the ONNX exporter's einsum lowering bakes a broadcast batch of 1 into
    # a Reshape and breaks exports with a dynamic batch axis; MatMul broadcasts natively.
    return (blocks @ xr.unsqueeze(-1)).squeeze(-1).flatten(-2)


def _rotate_eager(x: Tensor, rotation: Rotation, layout: str) -> Tensor:
    # Autocast would run the block einsum as a half-precision matmul; keep it in float32.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _rotate_float32(x, rotation, layout)


def _rotate_float32(x: Tensor, rotation: Rotation, layout: str) -> Tensor:
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


# ----- fast eager paths ---------------------------------------------------------------------------
def _complex_pairs(x: Tensor, pairs: int, dtype: torch.dtype) -> Tensor:
    """The first 2*pairs channels of x as complex numbers (x_2m + i x_2m+1), a view where possible."""
    xr = x[..., : 2 * pairs].to(dtype).unflatten(-1, (pairs, 2))
    if xr.stride(-1) != 1 or xr.storage_offset() % 2 or any(st % 2 for st in xr.stride()[:-1]):
        xr = xr.contiguous()
    return torch.view_as_complex(xr)


def _pairs_and_phase(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> tuple[Tensor, Tensor, int, torch.dtype]:
    """The rotated pairs of x as complex numbers z, the phase cos + i sin laid out as x, the number of pairs, and
    the dtype the product runs in."""
    dtype = _math_dtype(x, cos)
    if layout == "bnhd":
        cos, sin = cos.transpose(1, 2), sin.transpose(1, 2)
    pairs = cos.shape[-1]
    return _complex_pairs(x, pairs, dtype), torch.complex(cos.to(dtype), sin.to(dtype)), pairs, dtype


def _fast_planar(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """x' = x * (cos + i sin) on interleaved pairs; cos, sin: (Bp, Hp, N, M)."""
    z, phase, pairs, dtype = _pairs_and_phase(x, cos, sin, layout)
    out = torch.view_as_real(z * phase).flatten(-2)
    if 2 * pairs < x.shape[-1]:
        out = torch.cat((out, x[..., 2 * pairs :].to(dtype)), -1)
    return out.to(x.dtype)


# Under torch.compile on the CPU the planar rotation is one custom operator running the complex multiply above:
# inductor's backward through the complex multiply is wrong in torch 2.13 (see _dispatch), and its code for the
# real form took 3x the complex multiply's time (RoPE-Mixed, 12 layers, forward+backward, batch 32 and 128,
# benchmarks/rotation_in_step.py). The name carries a version: inductor's cache keys graphs by operator names.
def _planar_new(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """x' = x * (cos + i sin) as ``_fast_planar``, written into a new contiguous tensor (a custom operator's
    result must have the strides its shape-only version promises)."""
    z, phase, pairs, dtype = _pairs_and_phase(x, cos, sin, layout)
    out = torch.empty(x.shape, dtype=dtype, device=x.device)
    head = out[..., : 2 * pairs].unflatten(-1, (pairs, 2))
    if x.shape[-1] % 2 == 0:  # complex pairs of out are a view: one pass
        torch.mul(z, phase, out=torch.view_as_complex(head))
    else:
        head.copy_(torch.view_as_real(z * phase))
    if 2 * pairs < x.shape[-1]:
        out[..., 2 * pairs :] = x[..., 2 * pairs :]
    return out if out.dtype == x.dtype else out.to(x.dtype)


@torch.library.custom_op("liere::planar_rotate_v1", mutates_args=())
def _planar_op(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    return _planar_new(x, cos, sin, layout)


@_planar_op.register_fake
def _(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("liere::planar_rotate_backward_v1", mutates_args=())
def _planar_backward_op(grad: Tensor, x: Tensor, cos: Tensor, sin: Tensor, layout: str, want_x: bool,
                        want_phase: bool) -> tuple[Tensor, Tensor, Tensor]:
    """d/dx of x * e^(i theta) is g * e^(-i theta); d/dcos and d/dsin are the real and imaginary parts of
    g * conj(x), summed over the axes the angles broadcast along."""
    g_x = _planar_new(grad, cos, -sin, layout) if want_x else grad.new_empty(0)
    if not want_phase:
        return g_x, cos.new_empty(0), sin.new_empty(0)
    dtype = _math_dtype(x, cos)
    pairs = cos.shape[-1]
    g_phase = _complex_pairs(grad, pairs, dtype) * _complex_pairs(x, pairs, dtype).conj()
    shape = cos.transpose(1, 2).shape if layout == "bnhd" else cos.shape
    g_cos, g_sin = (part.sum_to_size(shape) for part in (g_phase.real, g_phase.imag))
    if layout == "bnhd":
        g_cos, g_sin = g_cos.transpose(1, 2), g_sin.transpose(1, 2)
    return g_x, g_cos.to(cos.dtype).contiguous(), g_sin.to(sin.dtype).contiguous()


@_planar_backward_op.register_fake
def _(grad, x, cos, sin, layout, want_x, want_phase):
    return (grad.new_empty(x.shape if want_x else 0), cos.new_empty(cos.shape if want_phase else 0),
            sin.new_empty(sin.shape if want_phase else 0))


def _planar_op_setup(ctx, inputs, output) -> None:
    x, cos, sin, layout = inputs
    ctx.layout = layout
    ctx.save_for_backward(x, cos, sin)


def _planar_op_grad(ctx, grad: Tensor):
    x, cos, sin = ctx.saved_tensors
    want_x, want_phase = ctx.needs_input_grad[0], ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    g_x, g_cos, g_sin = _planar_backward_op(grad, x, cos, sin, ctx.layout, want_x, want_phase)
    return ((g_x if want_x else None), (g_cos if ctx.needs_input_grad[1] else None),
            (g_sin if ctx.needs_input_grad[2] else None), None)


_planar_op.register_autograd(_planar_op_grad, setup_context=_planar_op_setup)


def _pack_perm(x_shape: tuple, rot_shape: tuple) -> tuple[list[int], int]:
    """Axis order of the (B, H, N, M, b) view of x for packing, and how many axes the rotation owns.

    The rotation's own axes (batch when per-sample, heads when per-head, then
    tokens and blocks) come first, matching its flattened (R, b, b) blocks; the
    axes it broadcasts over (batch when shared, heads when shared) become the
    rows of each small matmul.
    """
    own = [i for i in (0, 1) if rot_shape[i] != 1] + [2, 3]
    rows = [i for i in (0, 1) if i not in own]
    return own + rows + [4], len(own)


def _pack_view(x: Tensor, layout: str, m: int, b: int, perm: list[int]) -> Tensor:
    x5 = x[..., : m * b].unflatten(-1, (m, b))
    if layout == "bnhd":
        x5 = x5.transpose(1, 2)
    return x5.permute(perm)


def _num_rows(view: Tensor, n_own: int) -> int:
    return math.prod(view.shape[n_own:-1])


def _pack(views: list[Tensor], n_own: int, dtype: torch.dtype) -> Tensor:
    """Copy the views (own axes, row axes, b) side by side into one (R, rows, b) buffer, cast to ``dtype``."""
    own, b = views[0].shape[:n_own], views[0].shape[-1]
    counts = [_num_rows(v, n_own) for v in views]
    packed = torch.empty(*own, sum(counts), b, dtype=dtype, device=views[0].device)
    start = 0
    for v, c in zip(views, counts):
        packed[..., start : start + c, :].view(v.shape).copy_(v)
        start += c
    return packed.view(-1, sum(counts), b)


def _unpack(result: Tensor, like: list[Tensor], layout: str, m: int, b: int, perm: list[int], n_own: int):
    """Copy packed rows back into new tensors shaped and typed like ``like``; leftover channels pass through."""
    outs, start = [], 0
    for x in like:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        view = _pack_view(out, layout, m, b, perm)
        c = _num_rows(view, n_own)
        own = view.shape[:n_own]
        view.copy_(result.view(*own, result.shape[-2], b)[..., start : start + c, :].view(view.shape))
        if m * b < x.shape[-1]:
            out[..., m * b :] = x[..., m * b :]
        outs.append(out)
        start += c
    return outs


class _PackedBlockRotate(torch.autograd.Function):
    """Rotate several tensors (q, k) by the same blocks (Bp, Hp, N, M, b, b) with one bmm."""

    @staticmethod
    def forward(ctx, blocks: Tensor, layout: str, *xs: Tensor):
        dtype = _math_dtype(xs[0], blocks)
        group = _group_size(blocks.shape[-3], blocks.shape[-1])
        r = _group_blocks(blocks.to(dtype), group)  # (Bp, Hp, N, M / group, group b, group b)
        m, b = r.shape[-3], r.shape[-1]
        perm, n_own = _pack_perm(_logical_shape(xs[0], layout), blocks.shape)
        packed = _pack([_pack_view(x, layout, m, b, perm) for x in xs], n_own, dtype)  # (R, rows, b)
        r = r.reshape(-1, b, b)
        # A transposed view as bmm's second operand costs ~1.7x on the CPU; the copy is tiny (R x b x b).
        outs = _unpack(torch.bmm(packed, r.mT.contiguous()), list(xs), layout, m, b, perm, n_own)
        ctx.layout, ctx.perm, ctx.n_own, ctx.group = layout, perm, n_own, group
        ctx.blocks_shape, ctx.blocks_dtype = blocks.shape, blocks.dtype
        ctx.x_meta = [(x.shape, x.dtype, x.device) for x in xs]
        # Keep the inputs, not their packed copy: in attention q and k are views of the qkv projection, whose
        # storage the backward of SDPA keeps anyway (it saves v), so this costs no memory where the copy cost
        # a float32 q and k per layer (77 MB over ViT-Tiny's 12 layers at batch 32). The backward repacks them.
        ctx.save_for_backward(r, *(xs if ctx.needs_input_grad[0] else ()))
        return tuple(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, *grads):
        r, *xs = ctx.saved_tensors
        layout, perm, n_own, group = ctx.layout, ctx.perm, ctx.n_own, ctx.group
        b = r.shape[-1]
        m = ctx.blocks_shape[-3] // group
        grads = [torch.zeros(s, dtype=d, device=dev) if g is None else g for g, (s, d, dev) in zip(grads, ctx.x_meta)]
        gpacked = _pack([_pack_view(g, layout, m, b, perm) for g in grads], n_own, r.dtype)
        g_blocks = None
        if ctx.needs_input_grad[0]:
            packed = _pack([_pack_view(x, layout, m, b, perm) for x in xs], n_own, r.dtype)
            # g_R = sum over rows of g x^T, for every small matrix; keep the diagonal blocks of each group.
            g_grouped = torch.bmm(gpacked.mT, packed).view(*ctx.blocks_shape[:-3], m, b, b)
            g_blocks = _ungroup_blocks(g_grouped, group).to(ctx.blocks_dtype)
        g_xs = _unpack(torch.bmm(gpacked, r), grads, layout, m, b, perm, n_own)
        return (g_blocks, None, *g_xs)


# Small matmuls are overhead-bound on the CPU: grouping g consecutive b x b blocks into
# one block-diagonal (g b) x (g b) matrix multiplies the flops by g but divides the
# number of matrices by g, and bmm is ~2.5x faster at 16 x 16 than at 4 x 4 (rows = 2B).
# Time per channel and row of the three bmm (forward, d/dx, d/dR), one thread, 64 and 256 rows:
# widths 12, 16, 20, 24 within 1.3x of each other; odd widths slower, 9 most (2.3x 16's), 21 1.5x.
# So up to 24: Spherical RoPE's 21 blocks of 3 group in 21s, not 9s (1.5-1.8x less time per channel).
_GROUP_WIDTH = 24


def _group_size(m: int, b: int) -> int:
    """The largest divisor g of m with g * b <= 24 (1 when b >= 13)."""
    return max(g for g in range(1, m + 1) if m % g == 0 and (g * b <= _GROUP_WIDTH or g == 1))


def _group_blocks(blocks: Tensor, group: int) -> Tensor:
    """(..., M, b, b) -> (..., M / g, g b, g b) block-diagonal groups."""
    if group == 1:
        return blocks
    *lead, m, b, _ = blocks.shape
    out = blocks.new_zeros(*lead, m // group, group, b, group, b)
    torch.diagonal(out, dim1=-4, dim2=-2).copy_(blocks.view(*lead, m // group, group, b, b).movedim(-3, -1))
    return out.view(*lead, m // group, group * b, group * b)


def _ungroup_blocks(grouped: Tensor, group: int) -> Tensor:
    """The diagonal b x b blocks of (..., M / g, g b, g b) as (..., M, b, b)."""
    if group == 1:
        return grouped
    *lead, mg, gb, _ = grouped.shape
    b = gb // group
    diag = torch.diagonal(grouped.view(*lead, mg, group, b, group, b), dim1=-4, dim2=-2)  # (..., mg, b, b, g)
    return diag.movedim(-1, -3).reshape(*lead, mg * group, b, b)


def _logical_shape(x: Tensor, layout: str) -> tuple:
    return tuple(x.shape) if layout == "bhnd" else (x.shape[0], x.shape[2], x.shape[1], x.shape[3])


def _fast_blocks(xs: list[Tensor], blocks: Tensor, layout: str, orthogonal: bool = False,
                 rotation: Rotation | None = None):
    """blocks (Bp, Hp, N, M, b, b): rotate every tensor in xs, by the CPU kernel or one packed bmm. ``rotation``:
    the one-layer rotation the blocks come from, which may keep the kernel's transposes (``_transposed_blocks``)."""
    if cpu_kernel.supports(xs, blocks):
        keep = rotation is not None and blocks.shape[-1] in cpu_kernel.TILE_WIDTHS
        transposed = _transposed_blocks(rotation) if keep else None
        return cpu_kernel.rotate_blocks(xs, blocks, layout, orthogonal, transposed)
    return _PackedBlockRotate.apply(blocks, layout, *xs)


def _transposed_blocks(rotation: Rotation) -> Tensor | None:
    """The CPU kernel's R^T (float32, contiguous) of a one-layer rotation applied more than once, kept on it.

    A rotation shared by the layers is applied by each of them: dense LieRE's 6.4 MB transpose was made 12 times a
    step. It is kept from the second use on (a rotation used once, as each layer's own, keeps nothing: 12 of them
    held until the step ends would add 77 MB to dense per-layer LieRE's peak), and made again if the blocks were
    changed in place since.
    """
    blocks = rotation.blocks
    seen = rotation.__dict__.get("_transposed")
    if seen is None or seen[0] is not blocks or seen[1] != blocks._version:
        object.__setattr__(rotation, "_transposed", (blocks, blocks._version, None))
        return None
    if seen[2] is None:
        seen = (blocks, blocks._version, _only_layer(blocks).detach().to(torch.float32).mT.contiguous())
        object.__setattr__(rotation, "_transposed", seen)
    return seen[2]


def _only_layer(t: Tensor) -> Tensor:
    """A one-layer rotation's tensor without its layer axis. Not ``t[0]``: the backward of ``select`` makes a
    zero-filled tensor of the input's size and copies the gradient in, per call; a rotation shared by 12 layers
    paid that 12 times a step (dense LieRE: 12 x 6.4 MB filled, copied and summed). ``squeeze``'s backward is a
    view."""
    if t.shape[0] != 1:
        raise ValueError(f"expected a one-layer rotation tensor, got shape {tuple(t.shape)}")
    return t.squeeze(0)


def _rotate_fast(xs: list[Tensor], rotation: Rotation, layout: str) -> list[Tensor]:
    with torch.autocast(device_type=xs[0].device.type, enabled=False):
        if rotation.is_planar:
            return [_fast_planar(x, _only_layer(rotation.cos), _only_layer(rotation.sin), layout) for x in xs]
        out = _fast_blocks(xs, _only_layer(rotation.blocks), layout, rotation.orthogonal, rotation)
        return list(out) if isinstance(out, tuple) else [out]


def _use_triton(x: Tensor, rotation: Rotation) -> bool:
    """The fused kernel runs for CUDA tensors it supports, outside tracing, when triton is installed."""
    if not x.is_cuda or tracing():
        return False
    from . import triton_apply

    return triton_apply.available() and triton_apply.supports(x, rotation)


def _change_basis(x: Tensor, basis: Tensor, layout: str, *, inverse: bool) -> Tensor:
    """x -> B^T x (``inverse=False``, into the basis) or B x (back), on the first r channels; float32 or wider.

    basis: (Hb, r, r) of one layer. In row form, B^T x is x_row @ B.
    """
    r = basis.shape[-1]
    dtype = _math_dtype(x, basis)
    xb = x if layout == "bhnd" else x.transpose(1, 2)
    mat = basis.to(dtype)
    mat = mat.transpose(-1, -2) if inverse else mat
    with torch.autocast(device_type=x.device.type, enabled=False):  # float32 math, as the rotation itself
        head = xb[..., :r].to(dtype) @ mat[None]  # (B, H, N, r) @ (1, Hb, r, r)
    out = head if r == x.shape[-1] else torch.cat((head, xb[..., r:].to(dtype)), -1)
    return out if layout == "bhnd" else out.transpose(1, 2)


def _with_basis(rotate, xs: list[Tensor], rotation: Rotation, layout: str) -> list[Tensor]:
    """Rotate by B . R0 . B^T: into the basis, R0, back; the result in the inputs' dtypes."""
    basis = rotation.basis[0]  # one layer: (Hb, r, r)
    inner = [_change_basis(x, basis, layout, inverse=False) for x in xs]
    outs = rotate(inner, rotation.without_basis())
    return [_change_basis(o, basis, layout, inverse=True).to(x.dtype) for o, x in zip(outs, xs)]


def _dispatch(xs: list[Tensor], rotation: Rotation, layout: str) -> list[Tensor]:
    if rotation.basis is not None:
        return _with_basis(lambda ys, rot: _dispatch(ys, rot, layout), xs, rotation, layout)
    if len(xs) == 2 and _use_triton(xs[0], rotation) and _use_triton(xs[1], rotation):
        from .triton_apply import rotate_qk_triton

        return list(rotate_qk_triton(xs[0], xs[1], rotation, layout))
    if len(xs) == 1 and _use_triton(xs[0], rotation):
        from .triton_apply import rotate_triton

        return [rotate_triton(xs[0], rotation, layout)]
    if tracing():
        compiling_on_cpu = not exporting() and all(x.device.type == "cpu" for x in xs)
        if compiling_on_cpu and rotation.is_planar:
            # Not the complex multiply traced: inductor's backward through it is wrong in torch 2.13 (the gradient
            # of q off by up to 5 against the float64 oracle; aot_eager is right). Opaque, it is right and fast.
            return [_planar_op(x, rotation.cos[0], rotation.sin[0], layout) for x in xs]
        if compiling_on_cpu and cpu_kernel.supports(xs, rotation.blocks):
            # torch.compile on the CPU: the kernel, as one custom operator per tensor (see cpu_kernel.py)
            return [cpu_kernel.rotate_blocks_op(x, rotation.blocks[0], layout, rotation.orthogonal) for x in xs]
        return [_rotate_eager(x, rotation, layout) for x in xs]
    return _rotate_fast(xs, rotation, layout)


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
    if x.numel() == 0:  # an empty batch (B = 0) or no tokens: nothing to rotate
        return x.clone()
    return _dispatch([x], rotation, layout)[0]


def apply_rotation_qk(q: Tensor, k: Tensor, rotation: Rotation, *, layout: str = "bhnd", layer: int | None = None):
    """Rotate q and k by the same rotation (one fused pass on CUDA)."""
    for name, x in (("q", q), ("k", k)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not isinstance(rotation, Rotation):
        raise TypeError(f"rotation: expected a liere.Rotation, got {type(rotation).__name__}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if layer is not None:
        rotation = rotation.layer(layer)
    elif rotation.num_layers != 1:
        raise ValueError(f"layer: the rotation holds {rotation.num_layers} layers; pass layer=i")
    check_rotation_fits(q, rotation, layout, "q")
    check_rotation_fits(k, rotation, layout, "k")
    if q.numel() == 0:  # an empty batch (B = 0) or no tokens: nothing to rotate
        return q.clone(), k.clone()
    q, k = _dispatch([q, k], rotation, layout)
    return q, k

"""Fused Triton kernel: rotate q and k in one pass (CUDA; also runs under ``TRITON_INTERPRET=1``).

One program handles one (sample, head, token) row of q *and* k: it loads the
row's rotation once (cos/sin for b = 2, or the M blocks b x b), reads each of
q and k once, computes in float32 and writes each once in the input dtype:

    planar  x'_2m = c x_2m - s x_2m+1,   x'_2m+1 = s x_2m + c x_2m+1
    blocks  x'_{mb+i} = sum_j R[m, i, j] x_{mb+j}

Leftover channels (head_dim - M b) are copied through. Everything is
addressed by strides, so both layouts (B, H, N, D) and (B, N, H, D), strided
views such as q, k sliced from a fused qkv projection, and rotations broadcast
over the batch (Bp = 1) or heads (Hp = 1, stride 0) need no copies.

The backward runs the same kernel on the output gradients with R^T (the block
strides swapped, or the sine negated), and, when the rotation itself requires
grad, computes its gradient eagerly: g_R = sum over the broadcast axes of g x^T.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from ..rotation import Rotation

try:  # triton is an optional extra
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where triton is absent
    triton = None
    tl = None

__all__ = ["available", "rotate_qk_triton", "rotate_triton", "SUPPORTED_BLOCK_SIZES"]

SUPPORTED_BLOCK_SIZES = (2, 3, 4, 8, 16)
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Triton is importable and can run here (a CUDA device, or the CPU interpreter)."""
    if triton is None:
        return False
    return _interpreting() or torch.cuda.is_available()


def supports(x: Tensor, rotation: Rotation) -> bool:
    """Whether the kernel handles this input (otherwise the eager path runs)."""
    return (
        triton is not None
        and x.dtype in _DTYPES
        and rotation.dtype == torch.float32
        and (rotation.is_planar or rotation.block_size in SUPPORTED_BLOCK_SIZES)
        and x.stride(-1) == 1
    )


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


if triton is not None:

    @triton.jit
    def _copy_rest(src, dst, start, rest, rest_mask, REST: tl.constexpr):
        """Channels past the rotated ones pass through unchanged."""
        if REST > 0:
            tl.store(dst + start + rest, tl.load(src + start + rest, mask=rest_mask), mask=rest_mask)

    @triton.jit
    def _planar_row(src, dst, m, mask, c, s, rest, rest_mask, M: tl.constexpr, REST: tl.constexpr):
        """One token of one head: pairs (2m, 2m+1) rotated by (c, s), in fp32."""
        x0 = tl.load(src + 2 * m, mask=mask, other=0.0).to(tl.float32)
        x1 = tl.load(src + 2 * m + 1, mask=mask, other=0.0).to(tl.float32)
        tl.store(dst + 2 * m, (c * x0 - s * x1).to(dst.dtype.element_ty), mask=mask)
        tl.store(dst + 2 * m + 1, (s * x0 + c * x1).to(dst.dtype.element_ty), mask=mask)
        _copy_rest(src, dst, 2 * M, rest, rest_mask, REST)

    @triton.jit
    def _block_row(src, dst, r, chan, x_mask, rest, rest_mask, ROTATED: tl.constexpr, REST: tl.constexpr):
        """One token of one head: y_m = R_m x_m for every block m, in fp32."""
        x = tl.load(src + chan, mask=x_mask, other=0.0).to(tl.float32)
        y = tl.sum(r * x[:, None, :], axis=2)
        tl.store(dst + chan, y.to(dst.dtype.element_ty), mask=x_mask)
        _copy_rest(src, dst, ROTATED, rest, rest_mask, REST)

    @triton.jit
    def _planar_kernel(
        q_ptr, k_ptr, oq_ptr, ok_ptr, cos_ptr, sin_ptr,
        H, N,
        sxb, sxh, sxn,  # strides of q, k (same shape; k strides passed separately below)
        skb, skh, skn,
        sob, soh, son,  # strides of the outputs (same for q' and k')
        scb, sch, scn,  # strides of cos/sin (0 on broadcast axes); the pair axis is contiguous
        SIGN: tl.constexpr, M: tl.constexpr, M_PAD: tl.constexpr,
        REST: tl.constexpr, REST_PAD: tl.constexpr, HAS_K: tl.constexpr,
    ):
        pid = tl.program_id(0)
        n = pid % N
        h = (pid // N) % H
        b = pid // (N * H)
        m = tl.arange(0, M_PAD)
        mask = m < M
        rot = b * scb + h * sch + n * scn + m
        c = tl.load(cos_ptr + rot, mask=mask, other=1.0)
        s = tl.load(sin_ptr + rot, mask=mask, other=0.0) * SIGN
        rest = tl.arange(0, REST_PAD)
        rest_mask = rest < REST
        _planar_row(q_ptr + b * sxb + h * sxh + n * sxn, oq_ptr + b * sob + h * soh + n * son,
                    m, mask, c, s, rest, rest_mask, M, REST)
        if HAS_K:
            _planar_row(k_ptr + b * skb + h * skh + n * skn, ok_ptr + b * sob + h * soh + n * son,
                        m, mask, c, s, rest, rest_mask, M, REST)

    @triton.jit
    def _block_kernel(
        q_ptr, k_ptr, oq_ptr, ok_ptr, r_ptr,
        H, N,
        sxb, sxh, sxn,
        skb, skh, skn,
        sob, soh, son,
        srb, srh, srn, srm, sri, srj,  # rotation strides; swap sri/srj for R^T
        M: tl.constexpr, BS: tl.constexpr, M_PAD: tl.constexpr, B_PAD: tl.constexpr,
        REST: tl.constexpr, REST_PAD: tl.constexpr, HAS_K: tl.constexpr,
    ):
        pid = tl.program_id(0)
        n = pid % N
        h = (pid // N) % H
        b = pid // (N * H)
        m = tl.arange(0, M_PAD)[:, None, None]
        i = tl.arange(0, B_PAD)[None, :, None]
        j = tl.arange(0, B_PAD)[None, None, :]
        r_mask = (m < M) & (i < BS) & (j < BS)
        r = tl.load(r_ptr + b * srb + h * srh + n * srn + m * srm + i * sri + j * srj, mask=r_mask, other=0.0)
        r = r.to(tl.float32)
        # Channel of (m, j) for the input and of (m, i) for the output.
        m2 = tl.arange(0, M_PAD)[:, None]
        c2 = tl.arange(0, B_PAD)[None, :]
        x_mask = (m2 < M) & (c2 < BS)
        chan = m2 * BS + c2
        rest = tl.arange(0, REST_PAD)
        rest_mask = rest < REST
        _block_row(q_ptr + b * sxb + h * sxh + n * sxn, oq_ptr + b * sob + h * soh + n * son,
                   r, chan, x_mask, rest, rest_mask, M * BS, REST)
        if HAS_K:
            _block_row(k_ptr + b * skb + h * skh + n * skn, ok_ptr + b * sob + h * soh + n * son,
                       r, chan, x_mask, rest, rest_mask, M * BS, REST)


def _bhn_strides(x: Tensor, layout: str) -> tuple[int, int, int]:
    """(batch, head, token) strides of x in either layout."""
    if layout == "bhnd":
        return x.stride(0), x.stride(1), x.stride(2)
    return x.stride(0), x.stride(2), x.stride(1)


def _launch(xs: list[Tensor], data: tuple[Tensor, ...], planar: bool, layout: str, transpose: bool) -> list[Tensor]:
    """Rotate one or two tensors with the kernel; data = (cos, sin) (Bp, Hp, N, M) or (blocks,) (Bp, Hp, N, M, b, b)."""
    x = xs[0]
    batch, head_dim = x.shape[0], x.shape[-1]
    heads, tokens = (x.shape[1], x.shape[2]) if layout == "bhnd" else (x.shape[2], x.shape[1])
    outs = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in xs]
    q, k = xs[0], xs[-1]
    oq, ok = outs[0], outs[-1]
    sq, sk, so = _bhn_strides(q, layout), _bhn_strides(k, layout), _bhn_strides(oq, layout)
    grid = (batch * heads * tokens,)
    has_k = len(xs) == 2

    def bcast(t: Tensor, dim: int, size: int) -> int:
        return 0 if t.shape[dim] == 1 and size != 1 else t.stride(dim)

    if planar:
        cos, sin = (t.contiguous() for t in data)
        m = cos.shape[-1]
        rest = head_dim - 2 * m
        rs = (bcast(cos, 0, batch), bcast(cos, 1, heads), cos.stride(2))
        _planar_kernel[grid](
            q, k, oq, ok, cos, sin, heads, tokens, *sq, *sk, *so, *rs,
            SIGN=-1.0 if transpose else 1.0, M=m, M_PAD=_next_pow2(m),
            REST=rest, REST_PAD=_next_pow2(max(rest, 1)), HAS_K=has_k,
        )
    else:
        (blocks,) = data
        m, bs = blocks.shape[-3], blocks.shape[-1]
        rest = head_dim - m * bs
        si, sj = blocks.stride(4), blocks.stride(5)
        if transpose:
            si, sj = sj, si
        rs = (bcast(blocks, 0, batch), bcast(blocks, 1, heads), blocks.stride(2), blocks.stride(3), si, sj)
        _block_kernel[grid](
            q, k, oq, ok, blocks, heads, tokens, *sq, *sk, *so, *rs,
            M=m, BS=bs, M_PAD=_next_pow2(m), B_PAD=_next_pow2(bs),
            REST=rest, REST_PAD=_next_pow2(max(rest, 1)), HAS_K=has_k,
        )
    return outs


def _rotation_grad(xs, grads, data, planar: bool, layout: str):
    """Eager gradient of the rotation data, summed over the axes it broadcasts over."""
    x_all = [t if layout == "bhnd" else t.transpose(1, 2) for t in xs]
    g_all = [t if layout == "bhnd" else t.transpose(1, 2) for t in grads]
    ref = data[0]
    bp, hp, m = ref.shape[0], ref.shape[1], ref.shape[3]

    def reduce(t: Tensor) -> Tensor:  # (B, H, N, M, ...) -> (Bp, Hp, N, M, ...)
        if bp == 1:
            t = t.sum(0, keepdim=True)
        if hp == 1:
            t = t.sum(1, keepdim=True)
        return t

    if planar:
        g_cos = g_sin = 0
        for x, g in zip(x_all, g_all):
            x2 = x[..., : 2 * m].float().unflatten(-1, (m, 2))
            g2 = g[..., : 2 * m].float().unflatten(-1, (m, 2))
            g_cos = g_cos + reduce(g2[..., 0] * x2[..., 0] + g2[..., 1] * x2[..., 1])
            g_sin = g_sin + reduce(g2[..., 1] * x2[..., 0] - g2[..., 0] * x2[..., 1])
        return g_cos, g_sin
    bs = ref.shape[-1]
    g_r = 0
    for x, g in zip(x_all, g_all):
        x2 = x[..., : m * bs].float().unflatten(-1, (m, bs))
        g2 = g[..., : m * bs].float().unflatten(-1, (m, bs))
        g_r = g_r + reduce(torch.einsum("bhnmi,bhnmj->bhnmij", g2, x2))
    return (g_r,)


class _TritonRotate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layout: str, planar: bool, n_x: int, *tensors: Tensor):
        xs, data = list(tensors[:n_x]), tensors[n_x:]
        ctx.layout, ctx.planar, ctx.n_x = layout, planar, n_x
        needs_rot = any(ctx.needs_input_grad[3 + n_x :])
        ctx.save_for_backward(*data, *(xs if needs_rot else ()))
        outs = _launch(xs, data, planar, layout, transpose=False)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        n_data = 2 if ctx.planar else 1
        saved = ctx.saved_tensors
        data, xs = saved[:n_data], saved[n_data:]
        grads = [torch.zeros_like(g) if g is None else g for g in grads]
        grads = [g if g.stride(-1) == 1 else g.contiguous() for g in grads]
        g_xs = _launch(grads, data, ctx.planar, ctx.layout, transpose=True)
        g_data = [None] * n_data
        if xs:
            g_data = [gd.to(d.dtype) for gd, d in zip(_rotation_grad(xs, grads, data, ctx.planar, ctx.layout), data)]
        return (None, None, None, *g_xs, *g_data)


def _rotation_data(rotation: Rotation) -> tuple[bool, tuple[Tensor, ...]]:
    if rotation.is_planar:
        return True, (rotation.cos[0], rotation.sin[0])
    return False, (rotation.blocks[0],)


def rotate_qk_triton(q: Tensor, k: Tensor, rotation: Rotation, layout: str = "bhnd"):
    """Rotated (q, k) with one kernel launch; ``rotation`` must hold a single layer."""
    planar, data = _rotation_data(rotation)
    return _TritonRotate.apply(layout, planar, 2, q, k, *data)


def rotate_triton(x: Tensor, rotation: Rotation, layout: str = "bhnd") -> Tensor:
    """Rotated x with the kernel; ``rotation`` must hold a single layer."""
    planar, data = _rotation_data(rotation)
    return _TritonRotate.apply(layout, planar, 1, x, *data)[0]

"""Applying rotations (liere.ops.apply) against a dense head_dim x head_dim oracle.

The oracle is built here from the raw angles / blocks, independently of
``Rotation.dense``: pair m of the planar form acts on the interleaved channels
(2m, 2m+1); block m of the block form on channels [m b, (m+1) b); leftover
channels are untouched.
"""

from __future__ import annotations

import pytest
import torch

from liere.ops import apply_rotation, apply_rotation_qk
from liere.ops.expm import skew_expm
from liere.rotation import Rotation


def dense_from_angles(angles: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(..., M) angles -> (..., D, D): [[c, -s], [s, c]] on channels (2m, 2m+1)."""
    c, s = torch.cos(angles.double()), torch.sin(angles.double())
    out = torch.zeros(*angles.shape[:-1], head_dim, head_dim, dtype=torch.float64)
    for m in range(angles.shape[-1]):
        i, j = 2 * m, 2 * m + 1
        out[..., i, i], out[..., i, j] = c[..., m], -s[..., m]
        out[..., j, i], out[..., j, j] = s[..., m], c[..., m]
    for ch in range(2 * angles.shape[-1], head_dim):
        out[..., ch, ch] = 1.0
    return out


def dense_from_blocks(blocks: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(..., M, b, b) -> (..., D, D) block diagonal, identity on leftover channels."""
    *lead, m, b, _ = blocks.shape
    flat = blocks.double().reshape(-1, m, b, b)
    eye = torch.eye(head_dim - m * b, dtype=torch.float64)
    dense = torch.stack([torch.block_diag(*f.unbind(0), eye) for f in flat])
    return dense.reshape(*lead, head_dim, head_dim)


def random_rotation(form: str, bp: int, hp: int, n: int, head_dim: int, b: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    m = head_dim // b
    if form == "planar":
        angles = 3 * torch.randn(1, bp, hp, n, m, generator=gen)
        return Rotation(head_dim, cos=torch.cos(angles), sin=torch.sin(angles)), dense_from_angles(angles[0], head_dim)
    u = torch.randn(1, bp, hp, n, m, b, b, generator=gen)
    blocks = skew_expm(u - u.mT)
    return Rotation(head_dim, blocks=blocks), dense_from_blocks(blocks[0], head_dim)


def oracle(x: torch.Tensor, dense: torch.Tensor, layout: str) -> torch.Tensor:
    """x' = R x with dense (Bp, Hp, N, D, D), in float64."""
    xb = x.double() if layout == "bhnd" else x.double().transpose(1, 2)
    out = torch.einsum("bhnij,bhnj->bhni", dense, xb)
    return out if layout == "bhnd" else out.transpose(1, 2)


CASES = [
    # form, block size, head_dim (leftover channels when not a multiple)
    ("planar", 2, 8),
    ("planar", 2, 11),
    ("blocks", 2, 8),
    ("blocks", 3, 10),
    ("blocks", 4, 12),
    ("blocks", 8, 19),
    ("blocks", 16, 32),
]


@pytest.mark.parametrize("form,b,head_dim", CASES)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("bp,hp", [(1, 1), (3, 1), (1, 2), (3, 2)])
def test_apply_matches_dense_oracle(form, b, head_dim, layout, bp, hp):
    B, H, N = 3, 2, 5
    rotation, dense = random_rotation(form, bp, hp, N, head_dim, b, seed=b + head_dim)
    shape = (B, H, N, head_dim) if layout == "bhnd" else (B, N, H, head_dim)
    x = torch.randn(shape)
    out = apply_rotation(x, rotation, layout=layout)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), oracle(x, dense, layout), atol=1e-5, rtol=1e-5)


def test_planar_pairing_is_interleaved():
    # One pair at angle pi/2 maps e_0 -> e_1 and e_1 -> -e_0; channels 2.. stay.
    angles = torch.zeros(1, 1, 1, 1, 2)
    angles[..., 0] = torch.pi / 2
    rotation = Rotation(4, cos=torch.cos(angles), sin=torch.sin(angles))
    x = torch.eye(4).view(1, 1, 4, 4).transpose(1, 2).reshape(4, 1, 1, 4)  # 4 samples, one basis vector each
    out = apply_rotation(x, rotation)
    expected = torch.tensor([[0.0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]).view(4, 1, 1, 4)
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("form,b,head_dim", [("planar", 2, 8), ("blocks", 4, 8), ("blocks", 8, 16)])
def test_half_precision_inputs_use_float32_math(dtype, form, b, head_dim):
    rotation, dense = random_rotation(form, 1, 1, 6, head_dim, b, seed=1)
    x = torch.randn(2, 3, 6, head_dim).to(dtype)
    out = apply_rotation(x, rotation)
    assert out.dtype == dtype
    # fp32 math then one rounding to the input dtype: within one half-precision ulp of the exact result.
    tol = 2 * torch.finfo(dtype).eps * x.abs().amax().item()
    assert (out.double() - oracle(x, dense, "bhnd")).abs().max().item() <= tol


@pytest.mark.parametrize("form,b,head_dim", [("planar", 2, 7), ("blocks", 3, 7), ("blocks", 4, 9)])
def test_gradients_match_dense_oracle(form, b, head_dim):
    """d/dx and d/d(rotation) of the eager apply against autograd through the dense einsum."""
    B, H, N = 2, 2, 3
    gen = torch.Generator().manual_seed(5)
    m = head_dim // b
    x = torch.randn(B, H, N, head_dim, dtype=torch.float64, generator=gen, requires_grad=True)
    g = torch.randn(B, H, N, head_dim, dtype=torch.float64, generator=gen)
    if form == "planar":
        angles = torch.randn(1, 1, H, N, m, dtype=torch.float64, generator=gen, requires_grad=True)
        rot = Rotation(head_dim, cos=torch.cos(angles), sin=torch.sin(angles))
        dense = lambda: dense_from_angles_differentiable(angles[0], head_dim)  # noqa: E731
        param = angles
    else:
        u = torch.randn(1, 1, H, N, m, b, b, dtype=torch.float64, generator=gen, requires_grad=True)
        rot = Rotation(head_dim, blocks=torch.linalg.matrix_exp(u - u.mT))
        dense = lambda: block_diag_differentiable(torch.linalg.matrix_exp(u - u.mT)[0], head_dim)  # noqa: E731
        param = u
    gx, gp = torch.autograd.grad(apply_rotation(x, rot), (x, param), g)
    rx, rp = torch.autograd.grad(torch.einsum("bhnij,bhnj->bhni", dense(), x), (x, param), g)
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gp, rp)


def dense_from_angles_differentiable(angles, head_dim):
    c, s = torch.cos(angles), torch.sin(angles)
    blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)
    return block_diag_differentiable(blocks, head_dim)


def block_diag_differentiable(blocks, head_dim):
    *lead, m, b, _ = blocks.shape
    out = torch.zeros(*lead, head_dim, head_dim, dtype=blocks.dtype)
    out = out + torch.diag_embed(torch.cat([torch.zeros(m * b), torch.ones(head_dim - m * b)]).to(blocks.dtype))
    pieces = []
    for j in range(m):
        pad = torch.nn.functional.pad(blocks[..., j, :, :], (j * b, head_dim - (j + 1) * b, j * b, head_dim - (j + 1) * b))
        pieces.append(pad)
    return out + sum(pieces)


def test_qk_rotates_both_with_the_same_rotation():
    rotation, dense = random_rotation("blocks", 1, 2, 4, 8, 4, seed=3)
    q, k = torch.randn(2, 2, 4, 8), torch.randn(2, 2, 4, 8)
    q2, k2 = apply_rotation_qk(q, k, rotation)
    torch.testing.assert_close(q2.double(), oracle(q, dense, "bhnd"), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(k2.double(), oracle(k, dense, "bhnd"), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_qk_gradients_from_views_of_one_projection_match_dense_oracle(layout):
    """q and k sliced from one qkv tensor, as attention does: gradients to qkv and to the rotation's generators."""
    B, H, N, D, b = 2, 2, 5, 8, 4
    gen = torch.Generator().manual_seed(11)
    qkv = torch.randn(B, N, 3, H, D, dtype=torch.float64, generator=gen, requires_grad=True)
    u = torch.randn(1, 1, H, N, D // b, b, b, dtype=torch.float64, generator=gen, requires_grad=True)
    gq, gk = torch.randn(2, B, H, N, D, dtype=torch.float64, generator=gen)
    if layout == "bnhd":
        gq, gk = gq.transpose(1, 2), gk.transpose(1, 2)

    def split():
        q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0) if layout == "bhnd" else qkv.unbind(2)
        return q, k

    rot = Rotation(D, blocks=torch.linalg.matrix_exp(u - u.mT))
    q2, k2 = apply_rotation_qk(*split(), rot, layout=layout)
    got = torch.autograd.grad((q2 * gq).sum() + (k2 * gk).sum(), (qkv, u))
    dense = block_diag_differentiable(torch.linalg.matrix_exp(u - u.mT)[0], D)
    q, k = split()
    qo, ko = oracle_differentiable(q, dense, layout), oracle_differentiable(k, dense, layout)
    want = torch.autograd.grad((qo * gq).sum() + (ko * gk).sum(), (qkv, u))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def oracle_differentiable(x, dense, layout):
    xb = x if layout == "bhnd" else x.transpose(1, 2)
    out = torch.einsum("bhnij,bhnj->bhni", dense, xb)
    return out if layout == "bhnd" else out.transpose(1, 2)


def test_block_rotation_saves_no_copy_of_q_and_k():
    """The backward needs q and k for d/dR; it must keep the inputs themselves, not a packed float32 copy,
    since in attention their storage (the qkv projection) is alive anyway. (The batch is large enough that
    the rotation's own grouped blocks are smaller than q.)"""
    B, H, N, D = 64, 2, 9, 16
    qkv = torch.randn(B, H, N, 3 * D)
    q, k = qkv[..., :D], qkv[..., D : 2 * D]
    u = torch.randn(1, 1, H, N, D // 8, 8, 8, requires_grad=True)
    rot = Rotation(D, blocks=skew_expm(u - u.mT))
    storages = {qkv.untyped_storage().data_ptr(), rot.blocks.untyped_storage().data_ptr()}
    foreign = []

    def pack(t):
        if t.numel() >= q.numel() and t.untyped_storage().data_ptr() not in storages:
            foreign.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        q2, k2 = apply_rotation_qk(q, k, rot)
    assert foreign == [], f"the apply saved copies shaped {foreign}"
    (q2.sum() + k2.sum()).backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()

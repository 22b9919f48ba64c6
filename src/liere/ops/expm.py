"""Exponentials of batched skew-symmetric blocks, ``exp(A)`` for ``A`` of shape (..., b, b).

Every rotary method ends here: R = exp(G) with G skew-symmetric, so R is a
rotation. The block size decides the algorithm:

* b = 2  ``exp([[0, -t], [t, 0]]) = [[cos t, -sin t], [sin t, cos t]]``.
* b = 3  Rodrigues: with w the axis-angle vector of A and t = |w|,
         ``exp(A) = I + sin(t)/t A + (1 - cos t)/t^2 A^2``.
* b = 4  so(4) = so(3) + so(3): A = A+ + A- with A+- = (A +- *A)/2 (*A the Hodge
         dual). A+ and A- commute and (A+-)^2 = -s+-^2 I with s+- = |A+-|_F / 2,
         so ``exp(A) = (cos s+ I + sin(s+)/s+ A+)(cos s- I + sin(s-)/s- A-)``.
* b >= 5 scaling and squaring: exp(A) = T(A / 2^s)^(2^s), with T the degree-8
         Taylor polynomial evaluated with 4 matrix products (Paterson-Stockmeyer)
         and s chosen so that |A / 2^s|_1 <= 1/2. The truncation error is then
         below 0.5^9 / 9! ~ 5e-9, under float32 rounding, whatever the norm.
         The backward is hand-written reverse mode through the squarings and
         the polynomial: about 2x the forward's products, where autograd
         through ``torch.linalg.matrix_exp`` solves a 2b x 2b exponential.

All closed forms are safe at zero (series branches through ``torch.where``
with a guarded denominator, so neither value nor gradient is NaN) and use
``2 sin^2(t/2)`` instead of ``1 - cos t`` to avoid cancellation at tiny angles.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["skew_expm", "expm_taylor_ss", "rotation_2x2"]

# Past this many squarings the scaled norm would exceed 0.5 * 2**24 ~ 8e6, far
# beyond any position times generator in practice. Used only where the count
# must be static (torch.compile, export).
MAX_SQUARINGS = 24
_TAYLOR_THETA = 0.5
# 1/k! for the degree-8 Taylor polynomial.
_C = [1.0 / math.factorial(k) for k in range(9)]


def rotation_2x2(angle: Tensor) -> Tensor:
    """exp(angle * J) with J = [[0, -1], [1, 0]], shape (..., 2, 2)."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)


def _sinc_and_versine(t2: Tensor) -> tuple[Tensor, Tensor]:
    """Return (sin t / t, (1 - cos t) / t^2) from t^2, safe and accurate at 0."""
    small = t2 < 1e-4
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    half_sin = torch.sin(0.5 * t)
    sinc = torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, torch.sin(t) / t)
    versine = torch.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, 2.0 * half_sin * half_sin / (t * t))
    return sinc, versine


def _expm_3x3(a: Tensor) -> Tensor:
    t2 = a[..., 2, 1].square() + a[..., 0, 2].square() + a[..., 1, 0].square()
    sinc, versine = _sinc_and_versine(t2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    return eye + sinc[..., None, None] * a + versine[..., None, None] * (a @ a)


def _hodge_dual_4x4(a: Tensor) -> Tensor:
    """(*A)_ij = 1/2 eps_ijkl A_kl for a skew 4x4 A."""
    a01, a02, a03 = a[..., 0, 1], a[..., 0, 2], a[..., 0, 3]
    a12, a13, a23 = a[..., 1, 2], a[..., 1, 3], a[..., 2, 3]
    zero = torch.zeros_like(a01)
    # Upper triangle of *A: (01) <- a23, (02) <- -a13, (03) <- a12, (12) <- a03, (13) <- -a02, (23) <- a01.
    rows = (
        (zero, a23, -a13, a12),
        (-a23, zero, a03, -a02),
        (a13, -a03, zero, a01),
        (-a12, a02, -a01, zero),
    )
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def _expm_4x4(a: Tensor) -> Tensor:
    dual = _hodge_dual_4x4(a)
    eye = torch.eye(4, dtype=a.dtype, device=a.device)
    result = None
    for part in (0.5 * (a + dual), 0.5 * (a - dual)):
        s2 = part.square().sum((-1, -2)) / 4.0
        sinc, versine = _sinc_and_versine(s2)
        # cos s = 1 - s^2 * versine keeps the cosine exact near s = 0 as well.
        factor = (1.0 - s2 * versine)[..., None, None] * eye + sinc[..., None, None] * part
        result = factor if result is None else result @ factor
    return result


def _num_squarings(a: Tensor, static: bool) -> tuple[Tensor, int]:
    """Per-matrix squaring counts (as a float tensor) and the loop length."""
    norm1 = a.abs().sum(-2).amax(-1)  # max column sum
    s = torch.ceil(torch.log2(norm1.clamp_min(1e-30) / _TAYLOR_THETA)).clamp(0, MAX_SQUARINGS)
    if static or a.numel() == 0:
        return s, MAX_SQUARINGS if a.numel() else 0
    return s, int(s.max().item())


def _is_static_context() -> bool:
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


class _ExpmTaylorSS(torch.autograd.Function):
    """Scaling and squaring with a hand-written reverse-mode backward."""

    @staticmethod
    def forward(ctx, a: Tensor, static: bool):
        s, loops = _num_squarings(a, static)
        b = a * torch.exp2(-s)[..., None, None]
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        b2 = b @ b
        b3 = b2 @ b
        b4 = b2 @ b2
        tail = _C[4] * eye + _C[5] * b + _C[6] * b2 + _C[7] * b3 + _C[8] * b4
        x = eye + b + _C[2] * b2 + _C[3] * b3 + b4 @ tail
        squares = []
        for i in range(loops):
            squares.append(x)
            x = torch.where((s > i)[..., None, None], x @ x, x)
        ctx.save_for_backward(s, b, b2, b4, tail, *squares)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor):
        s, b, b2, b4, tail, *squares = ctx.saved_tensors
        g = grad
        for i in reversed(range(len(squares))):
            x = squares[i]
            xt = x.mT
            g = torch.where((s > i)[..., None, None], g @ xt + xt @ g, g)
        # Reverse through x = I + b + c2 b2 + c3 b3 + b4 @ tail.
        g_tail = b4.mT @ g
        g_b4 = g @ tail.mT + _C[8] * g_tail
        g_b = g + _C[5] * g_tail
        g_b2 = _C[2] * g + _C[6] * g_tail
        g_b3 = _C[3] * g + _C[7] * g_tail
        g_b2 = g_b2 + g_b4 @ b2.mT + b2.mT @ g_b4
        g_b2 = g_b2 + g_b3 @ b.mT
        g_b = g_b + b2.mT @ g_b3
        g_b = g_b + g_b2 @ b.mT + b.mT @ g_b2
        return g_b * torch.exp2(-s)[..., None, None], None


def expm_taylor_ss(a: Tensor) -> Tensor:
    """General-size exponential by scaling and squaring (any square ``a``; exact for skew)."""
    return _ExpmTaylorSS.apply(a, _is_static_context())


def skew_expm(a: Tensor) -> Tensor:
    """exp(a) for a batch of skew-symmetric matrices (..., b, b), computed in the input dtype.

    Closed forms for b <= 4, scaling and squaring otherwise. Callers pass float32
    (or float64 for tests); half precision is not accurate enough for angles.
    """
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"skew_expm: expected a batch of square matrices (..., b, b), got shape {tuple(a.shape)}")
    size = a.shape[-1]
    if size == 1:
        return torch.ones_like(a)
    if size == 2:
        return rotation_2x2(a[..., 1, 0])
    if size == 3:
        return _expm_3x3(a)
    if size == 4:
        return _expm_4x4(a)
    return expm_taylor_ss(a)

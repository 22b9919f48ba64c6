"""Exponentials of batched skew-symmetric blocks, ``exp(A)`` for ``A`` of shape (..., b, b).

Every rotary method ends here: R = exp(G) with G skew-symmetric, so R is a
rotation. The block size decides the algorithm:

* b = 2  ``exp([[0, -t], [t, 0]]) = [[cos t, -sin t], [sin t, cos t]]``.
* b = 3  Rodrigues: with w the axis-angle vector of A and t = |w|,
         ``exp(A) = I + sin(t)/t A + (1 - cos t)/t^2 A^2``.
* b = 4  so(4) = so(3) + so(3): A = A+ + A- with A+- = (A +- *A)/2 (*A the Hodge
         dual). A+ and A- commute and (A+-)^2 = -s+-^2 I with s+- = |A+-|_F / 2,
         so ``exp(A) = (cos s+ I + sin(s+)/s+ A+)(cos s- I + sin(s-)/s- A-)``.
* b >= 5 scaling and squaring: exp(A) = T(A / 2^s)^(2^s), with T the degree-12
         Taylor polynomial evaluated with 5 matrix products (Paterson-Stockmeyer,
         T = P0 + B^4 (P1 + B^4 P2) with P0, P1 cubic and P2 quartic in B) and s
         chosen so that the spectral norm rho of A / 2^s is at most 1.5. A skew A
         is normal, so |A^k|_2 = rho^k and the truncation error is below
         sum_{k>12} 1.5^k / k! ~ 3e-8, at float32 rounding, whatever the norm.
         rho is bounded cheaply: first by the 1-norm, then, once B^4 is known, by
         |B^4|_1^(1/4), which is much tighter and lets us drop squarings by
         rescaling B, B^2, B^4 (no extra product). The error that remains comes
         from rounding in the squarings (it doubles with each), so a high degree
         and few squarings beat a low degree and many; each squaring costs one
         product forward and two backward.
         The backward is hand-written reverse mode through the squarings and
         the polynomial: about 2x the forward's products, where autograd
         through ``torch.linalg.matrix_exp`` solves a 2b x 2b exponential.

All closed forms are safe at zero (series branches through ``torch.where``
with a guarded denominator, so neither value nor gradient is NaN) and use
``2 sin^2(t/2)`` instead of ``1 - cos t`` to avoid cancellation at tiny angles.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch import Tensor

from .._compat import exporting, tracing
from . import cpu_kernel

__all__ = ["skew_expm", "expm_taylor_ss", "rotation_2x2", "expm_4x4_scaled", "new_site"]

# Past this many squarings the scaled norm would exceed 0.5 * 2**24 ~ 8e6, far
# beyond any position times generator in practice. Used only where the count
# must be static (export to ONNX, jit tracing).
MAX_SQUARINGS = 24
# Dynamic counts may go further (float64 batches at huge positions).
MAX_SQUARINGS_F64 = 64
# float32 (with the orthogonalising step) stays within 1e-5 of float64 up to this many squarings;
# beyond, the chunk runs in float64.
_MAX_SQUARINGS_F32 = 8
# From this many squarings on, float32 results get one orthogonalising step (see _expm_chunk).
_POLISH_FROM = 6
# Bytes per intermediate of one chunk in the CPU's chunked exponential: 2 MB, so that a chunk's working set
# (its polynomial, squares and gradient, ~14 intermediates in the backward) stays in this CPU's 32 MB L3.
# Dense per-layer LieRE on a ViT-Tiny, batch 32 (4,608 exponentials of 64x64), chunk sizes alternated round by
# round in one process on a quiet machine: its 12 layers' rotation, forward and backward, took 1,027 ms with
# 8 MB chunks and 884 ms with 2 MB; the exponentials alone were no faster with 1 MB or 512 kB chunks. Peak
# memory did not change (858 MB for the step: the 75 MB batches set it, not the chunks). Very small chunks
# cost more in per-op synchronisation than they save.
_CHUNK_BYTES = 1 << 21
# Inputs up to this size keep their polynomial and squares for the backward instead of recomputing them:
# about (s + 6) times the input, ~100 MB for the 12 layers of LieRE-8 on a ViT-Tiny.
_SAVE_INPUT_BYTES = 1 << 24
_TAYLOR_THETA = 1.5
# float64 inputs (tests, gradcheck) get a smaller scaled norm: 0.25^13 / 13! ~ 2e-18.
_TAYLOR_THETA_F64 = 0.25
# log2(_TAYLOR_THETA / _TAYLOR_THETA_F64), rounded up: float64 runs at most this many more squarings.
_F64_EXTRA = 3
# 1/k! for the degree-12 Taylor polynomial.
_C = [1.0 / math.factorial(k) for k in range(13)]


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


def _theta(a: Tensor) -> float:
    return _TAYLOR_THETA_F64 if a.dtype == torch.float64 else _TAYLOR_THETA


def expm_4x4_scaled(s: Tensor, t: Tensor) -> Tensor:
    """exp(t S) for skew 4x4 S (..., 4, 4) and scalars t broadcastable against S's batch.

    For commuting methods (ComRoPE, where every position scales the same S)
    the work that involves matrices is done once per S, and each position
    costs only elementwise work: with S = S+ + S- split as above,
    (S+-)^2 = -sigma+-^2 I, alpha = cos(t sigma), beta = sin(t sigma) / sigma,

        exp(t S) = (alpha+ I + beta+ S+)(alpha- I + beta- S-)
                 = alpha+ alpha- I + alpha+ beta- S- + beta+ alpha- S+ + beta+ beta- S+ S-,

    where S+, S- and S+ S- depend only on S. beta = t sinc(t sigma) is safe at
    sigma = 0 (value and gradient).
    """
    dual = _hodge_dual_4x4(s)
    plus, minus = 0.5 * (s + dual), 0.5 * (s - dual)
    both = plus @ minus
    t2 = t * t
    coef = []
    for part in (plus, minus):
        x2 = t2 * (part.square().sum((-1, -2)) / 4.0)  # (t sigma)^2
        sinc, versine = _sinc_and_versine(x2)
        coef.append((1.0 - x2 * versine, t * sinc))  # (alpha, beta)
    (ap, bp), (am, bm) = coef
    eye = torch.eye(4, dtype=s.dtype, device=s.device)
    e = lambda c: c[..., None, None]  # noqa: E731
    return e(ap * am) * eye + e(ap * bm) * minus + e(bp * am) * plus + e(bp * bm) * both


def _num_squarings(a: Tensor, theta: float | None = None) -> Tensor:
    """Per-matrix squaring counts (a float tensor) from the 1-norm bound of the spectral norm."""
    norm1 = a.abs().sum(-2).amax(-1)  # max column sum
    theta = _theta(a) if theta is None else theta
    # NaN entries (diverged generators) get no squarings: their result is NaN, as matrix_exp's would be.
    return torch.ceil(torch.log2(norm1.clamp_min(1e-30) / theta)).nan_to_num(0.0).clamp(0, MAX_SQUARINGS_F64)


def _refine(a: Tensor, s: Tensor, theta: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """s and B = A / 2^s, B^2, B^4 with rho(B) <= theta, using as few squarings as the bounds allow."""
    b = a * torch.exp2(-s)[..., None, None]
    b2 = torch.bmm(b, b)
    b4 = torch.bmm(b2, b2)
    # rho(B)^4 = |B^4|_2 <= |B^4|_1 for skew B: undo the squarings this tighter bound makes unnecessary.
    rho = b4.abs().sum(-2).amax(-1).clamp_min(1e-30).pow(0.25)
    k = torch.minimum(torch.floor(torch.log2(theta / rho)).clamp_min(0), s).nan_to_num(0.0)
    up = torch.exp2(k)[..., None, None]
    up2 = up * up
    return s - k, b.mul_(up), b2.mul_(up2), b4.mul_(up2 * up2)


def _scaled_powers(a: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    a = a.reshape(-1, a.shape[-2], a.shape[-1])
    return _refine(a, _num_squarings(a), _theta(a))


def _chunk_rows(n: int, itemsize: int, device: torch.device) -> int:
    """How many n x n matrices one chunk holds: about _CHUNK_BYTES each, so that every intermediate of a
    chunk stays in cache and is recycled by the allocator instead of being a fresh page-faulted buffer."""
    if device.type != "cpu":
        return 1 << 62
    return max(1, _CHUNK_BYTES // (n * n * itemsize))


def _combine(terms, identity: float = 0.0) -> Tensor:
    """sum_k c_k M_k + identity * I as a new tensor, one fused pass per term (for 8x8 blocks the
    elementwise passes cost as much as the products, so a product and a sum per term matter)."""
    (c0, m0), *rest = terms
    out = torch.mul(m0, c0)
    for c, m in rest:
        out.add_(m, alpha=c)
    if identity and tracing():  # exporters reject in-place writes through a view
        out.add_(torch.eye(out.shape[-1], dtype=out.dtype, device=out.device), alpha=identity)
    elif identity:
        out.diagonal(dim1=-2, dim2=-1).add_(identity)
    return out


def _taylor(b: Tensor, b2: Tensor, b4: Tensor):
    """Degree-12 Taylor polynomial (5 products in all with B^2, B^4): returns (T, B^3, inner, mid)."""
    b3 = torch.bmm(b2, b)
    inner = _combine(((_C[12], b4), (_C[11], b3), (_C[10], b2), (_C[9], b)), _C[8])
    mid = _combine(((_C[7], b3), (_C[6], b2), (_C[5], b)), _C[4]).baddbmm_(b4, inner)
    x = _combine(((_C[3], b3), (_C[2], b2), (1.0, b)), 1.0).baddbmm_(b4, mid)
    return x, b3, inner, mid


class _Schedule(NamedTuple):
    """Which matrices of a chunk run squaring i.

    With ``starts`` (the CPU's host-read counts, spread over 3+ values): the chunk is sorted by count
    (``order`` maps sorted rows to the input's), so squaring i runs on the rows from ``starts[i]`` on, and
    no product is wasted. Without: every row runs every squaring, and from ``common`` on (0 for a count
    fixed before the data are seen: traced graphs, an accelerator's read-back) a ``torch.where`` masks
    the rows whose own count is lower. ``common`` means nothing when ``starts`` is set.
    """

    common: int
    starts: tuple[int, ...] | None = None
    order: Tensor | None = None


def _square(x: Tensor, s: Tensor, i: int, plan: _Schedule) -> Tensor:
    if plan.starts is not None:
        start = plan.starts[i]
        if not start:
            return torch.bmm(x, x)
        out = torch.empty_like(x)
        out[:start] = x[:start]
        torch.bmm(x[start:], x[start:], out=out[start:])
        return out
    if i < plan.common:
        return torch.bmm(x, x)
    return torch.where((s > i)[..., None, None], torch.bmm(x, x), x)


def _square_backward(g: Tensor, square_input: Tensor, s: Tensor, i: int, plan: _Schedule) -> Tensor:
    """Reverse of ``_square``: g_x = g x^T + x^T g on the rows that ran squaring i; the others pass g on.
    With ``starts``, g is the backward's own (sorted) copy, and its rows are overwritten in place."""
    start = plan.starts[i] if plan.starts is not None else 0
    xt = square_input[start:].mT  # bmm reads transposed operands in place: no copies
    step = torch.bmm(g[start:], xt).baddbmm_(xt, g[start:])
    if start:
        g[start:] = step
        return g
    if plan.starts is not None or i < plan.common:
        return step
    return torch.where((s > i)[..., None, None], step, g)


def _schedule_by_count(s: Tensor, b: Tensor, b2: Tensor, b4: Tensor):
    """The chunk's squaring schedule from its counts' histogram (one host read): (s, b, b2, b4, loops, plan).

    Rows are sorted by count when the counts spread over more than two values. Sorting costs about six
    passes over the chunk (gathering B, B^2, B^4 and the gradient, scattering both results); a masked
    squaring costs one ``torch.where`` plus the products wasted on the rows that needed fewer. With one
    masked squaring the mask is cheaper (dense LieRE's norm-sorted chunks: sorting them was 5% slower);
    LieRE-8's single chunk of 8x8 blocks, counts 0 to 5, runs 3% faster sorted (op benchmark)."""
    per_count = torch.bincount(s.to(torch.int64)).tolist()
    loops = max(len(per_count) - 1, 0)
    common = next((i for i, c in enumerate(per_count) if c), 0)
    if loops - common <= 1:
        return s, b, b2, b4, loops, _Schedule(common)
    order = torch.argsort(s)
    s, b, b2, b4 = (t.index_select(0, order) for t in (s, b, b2, b4))
    starts = tuple(itertools.accumulate(per_count))[:loops]  # rows with count <= i sit before starts[i]
    return s, b, b2, b4, loops, _Schedule(0, starts, order)


def _unsort(x: Tensor, plan: _Schedule) -> Tensor:
    if plan.order is None:
        return x
    return torch.empty_like(x).index_copy_(0, plan.order, x)


def _expm_chunk(a: Tensor, count, keep: bool, polish: bool | None = None):
    """exp of a chunk (c, n, n); with ``keep`` also what the reverse pass needs.

    ``count`` is how many squarings the loop runs: ``None`` reads the counts the data need (one host
    read), ``"static"`` runs MAX_SQUARINGS (traced graphs), an int runs that many (an accelerator's
    count from an earlier call, see _CountReadback). Per-matrix counts below the loop's are masked.
    Float32 chunks that need more than _MAX_SQUARINGS_F32 squarings run in float64 (see below); the
    result and the saved tensors are then float64.
    """
    theta = _theta(a)
    s0 = _num_squarings(a, theta)
    needed = None
    if count is None:
        s, b, b2, b4, loops, plan = _schedule_by_count(*_refine(a, s0, theta))
    else:
        loops = MAX_SQUARINGS if count == "static" else int(count)
        s, b, b2, b4 = _refine(a, s0.clamp(max=loops), theta)
        plan = _Schedule(0)
        if count != "static":
            # What the data needed, for the read-back; where it exceeds the loop, the 1-norm bound.
            needed = torch.where(s0 > loops, s0, s).max()
    if count != "static" and loops > _MAX_SQUARINGS_F32 and a.dtype == torch.float32:
        # Each squaring doubles the rounding error of the scaled exponential: past this count
        # (|A| of a few hundred radians) float32 would drift from orthogonal by more than 1e-5.
        # Such chunks (positions in pixels or millimetres) run in float64, where 2^s * eps64
        # stays below 1e-7 up to |A| ~ 1e8; the common case never gets here.
        if count is None:
            return _expm_chunk(a.double(), None, keep, polish)
        # float64's smaller scaled norm needs up to _F64_EXTRA more squarings; counts stay in float32's units.
        x, saved, needed = _expm_chunk(a.double(), loops + _F64_EXTRA, keep, polish)
        return x, saved, needed - _F64_EXTRA
    x, _, inner, mid = _taylor(b, b2, b4)
    squares = []
    for i in range(loops):
        if keep:
            squares.append(x)
        x = _square(x, s, i, plan)
    polish = not keep if polish is None else polish
    if polish and x.dtype == torch.float32 and (count == "static" or loops >= _POLISH_FROM):
        # One Newton-Schulz step, x <- x (3I - x^T x) / 2, pulls the squarings' accumulated rounding back
        # onto the orthogonal group (it squares the distance from it). Its Jacobian at an orthogonal x
        # is the identity on the tangent directions, the only ones exp's Jacobian reaches, so the
        # backward (which reverses through the squarings without it) stays exact to rounding.
        x = torch.baddbmm(x, x, torch.bmm(x.mT, x), beta=1.5, alpha=-0.5)
    return _unsort(x, plan), (s, b, b2, b4, inner, mid, squares, plan), needed


def _expm_chunk_backward(g: Tensor, saved) -> Tensor:
    """Reverse mode through the squarings and the polynomial of one chunk."""
    s, b, b2, b4, inner, mid, squares, plan = saved
    mm = torch.bmm
    if plan.order is not None:
        g = g.index_select(0, plan.order)  # a new tensor: _square_backward overwrites its rows
    for i in reversed(range(len(squares))):
        g = _square_backward(g, squares[i], s, i, plan)
    # Reverse through x = I + b + c2 b2 + c3 b3 + b4 @ mid,
    # mid = c4 I + c5 b + c6 b2 + c7 b3 + b4 @ inner, inner = c8 I + c9 b + c10 b2 + c11 b3 + c12 b4.
    # Transposes stay general (not b^T = -b): gradcheck perturbs the input off the skew matrices.
    b4t, b2t, bt = (t.mT for t in (b4, b2, b))
    g_mid = mm(b4t, g)
    g_inner = mm(b4t, g_mid)
    g_b4 = mm(g, mid.mT).add_(g_inner, alpha=_C[12]).baddbmm_(g_mid, inner.mT)
    g_b3 = _combine(((_C[3], g), (_C[7], g_mid), (_C[11], g_inner)))
    g_b2 = _combine(((_C[2], g), (_C[6], g_mid), (_C[10], g_inner)))
    g_b2.baddbmm_(g_b4, b2t).baddbmm_(b2t, g_b4).baddbmm_(g_b3, bt)
    g_b = _combine(((1.0, g), (_C[5], g_mid), (_C[9], g_inner)))
    g_b.baddbmm_(b2t, g_b3).baddbmm_(g_b2, bt).baddbmm_(bt, g_b2)
    return _unsort(g_b.mul_(torch.exp2(-s)[..., None, None]), plan)


def _expm_forward(a: Tensor, count, save: bool = False):
    """exp of every (n, n) matrix of ``a``, chunk by chunk on the CPU (see _ExpmTaylorSS); also, where
    ``count`` is an int, the largest squaring count the data needed (a device scalar, for _CountReadback),
    and with ``save``, where the batch is one chunk, what its backward needs (else None: recompute)."""
    shape, n = a.shape, a.shape[-1]
    flat = a.reshape(-1, n, n)
    if not flat.shape[0]:
        return a.new_empty(shape), None, None
    # A batch that keeps its intermediates for the backward gains nothing from chunks: all of them live on.
    step = _chunk_rows(n, flat.element_size(), flat.device) if count is None and not save else flat.shape[0]
    if flat.shape[0] <= step:
        x, saved, needed = _expm_chunk(flat, count, keep=save, polish=True)
        return x.to(a.dtype).view(shape), needed, (saved if save else None)
    out = torch.empty_like(flat)
    for rows in _chunks_by_norm(flat, step):
        out.index_copy_(0, rows, _expm_chunk(flat.index_select(0, rows), count, keep=False)[0].to(out.dtype))
    return out.view(shape), None, None


def _expm_backward(a: Tensor, grad: Tensor, count) -> Tensor:
    """Vector-Jacobian product of exp at ``a``: recomputes each chunk's forward, then reverses through it."""
    n = a.shape[-1]
    if not a.numel():
        return a.new_zeros(a.shape)
    flat = a.reshape(-1, n, n)
    g_all = grad.reshape(flat.shape)

    def chunk(a_rows, g_rows):
        _, saved, _ = _expm_chunk(a_rows, count, keep=True)
        return _expm_chunk_backward(g_rows.to(saved[1].dtype), saved)

    step = _chunk_rows(n, flat.element_size(), flat.device) if count is None else flat.shape[0]
    if flat.shape[0] <= step:
        return chunk(flat, g_all).to(a.dtype).view(a.shape)
    out = torch.empty_like(flat)
    for rows in _chunks_by_norm(flat, step):
        out.index_copy_(0, rows, chunk(flat.index_select(0, rows), g_all.index_select(0, rows)).to(out.dtype))
    return out.view(a.shape)


def _chunks_by_norm(flat: Tensor, step: int) -> tuple[Tensor, ...]:
    """Row indices of ``flat`` in chunks of ``step``, matrices of similar norm together.

    A chunk whose counts spread over one or two values runs as many squarings as its largest matrix needs
    and masks the others (a ``torch.where`` per squaring, which costs about two thirds of the product it
    selects from, and the product is wasted on the masked matrices); a wider spread pays for sorting
    (see _schedule_by_count). Positions spread the norms over a range of ~2^8, so chunks cut in order mix
    all counts: for dense LieRE on ViT-Tiny's 8x8 grid, 72 masked squarings per pass and 15% of the
    squaring products wasted; chunks of similar Frobenius norm (within a factor sqrt(n) of the spectral
    norm that sets the count, and one fused pass over the batch, where the 1-norm would first write |A|):
    8 masked squarings and 4% wasted. The gather costs one copy of each chunk.
    """
    order = torch.argsort(torch.linalg.vector_norm(flat, dim=(-2, -1)))
    return order.split(step)


# ----- squaring counts on accelerators, without making the host wait -------------------------------------
# On the CPU a host read of the counts costs nothing, so the exponential reads them every call. On an
# accelerator that read would synchronise every training step. There, a call site (one encoding, see
# new_site) runs the count read back, asynchronously, from an earlier call with the same shape, plus
# _COUNT_MARGIN: one spare squaring absorbs a doubling of |A| between the two calls (training changes the
# generators by a fraction of a percent per step). The first call of a site and shape reads synchronously,
# once. If a later call needed more squarings than it ran, its result was truncated; the read-back that
# reveals it raises the count and warns.
_COUNT_MARGIN = 1
# Tests set this to run the accelerator's protocol on the CPU.
_READBACK_ON_CPU = False
_SITES: dict[tuple, "_CountReadback"] = {}
_site_ids = itertools.count()


def new_site() -> int:
    """A fresh call-site id for ``skew_expm(..., site=)``: one per module that calls it every step."""
    return next(_site_ids)


class _CountReadback:
    """The squaring count of one (site, shape), copied to the host without waiting for the device."""

    def __init__(self):
        self.count: int | None = None
        self.pending = None  # (host copy of the needed count, event, count that was run)

    def poll(self) -> None:
        if self.pending is None:
            return
        host, event, ran = self.pending
        if event is not None and not event.query():
            return
        needed = int(host)  # the copy has landed: reading it does not wait
        self.pending = None
        if needed > ran:
            import warnings

            warnings.warn(f"liere: an exponential ran {ran} squarings where its data needed {needed} (its "
                          "generators or positions grew more than 2x since the previous call); later calls "
                          "use the new count", RuntimeWarning, stacklevel=3)
        self.count = needed + _COUNT_MARGIN

    def record(self, needed: Tensor, ran: int) -> None:
        if self.pending is not None:
            return
        if needed.device.type == "cpu":
            self.pending = (needed.clone(), None, ran)
            return
        host = torch.empty((), dtype=needed.dtype, pin_memory=True)
        host.copy_(needed, non_blocking=True)
        event = torch.Event(needed.device)
        event.record()
        self.pending = (host, event, ran)


def _uses_readback(a: Tensor, site: int | None) -> bool:
    return site is not None and (a.device.type != "cpu" or _READBACK_ON_CPU)


def _keeps(a: Tensor, site: int | None) -> bool:
    """Whether the forward keeps its polynomial and squares for the backward (from shape and device only)."""
    return a.numel() * a.element_size() <= _SAVE_INPUT_BYTES and not _uses_readback(a, site)


def _readback(a: Tensor, site: int | None) -> "_CountReadback | None":
    if not _uses_readback(a, site):
        return None
    return _SITES.setdefault((site, tuple(a.shape), a.dtype, a.device), _CountReadback())


def _forward_with_counts(a: Tensor, site: int | None) -> tuple[Tensor, object]:
    """Eager forward: returns exp(a) and the count its backward should use (None: read it again)."""
    readback = _readback(a, site)
    if readback is None:
        return _expm_forward(a, None)[0], None
    readback.poll()
    if readback.count is None:  # first call of this site and shape: one synchronous read
        flat = a.reshape(-1, a.shape[-1], a.shape[-1])
        needed = int(_num_squarings(flat).max()) if flat.shape[0] else 0
        readback.count = needed + _COUNT_MARGIN
    out, needed, _ = _expm_forward(a, readback.count)
    if needed is not None:
        readback.record(needed, readback.count)
    return out, readback.count


def differentiable_vjp(a: Tensor, grad: Tensor) -> Tensor:
    """d/da <exp(a), grad> for ``create_graph=True`` (a gradient penalty): autograd through float64
    ``torch.linalg.matrix_exp``, which can be differentiated again; the hand-written backwards cannot
    (they reuse the forward's tensors and write in place). Slow, and only for that case."""
    with torch.enable_grad():
        a64 = a.double()
        if not a64.requires_grad:
            a64 = a64.detach().requires_grad_()
        (g,) = torch.autograd.grad(torch.linalg.matrix_exp(a64), a64, grad.double(), create_graph=True)
    return g.to(a.dtype)


class _ExpmTaylorSS(torch.autograd.Function):
    """Scaling and squaring with a hand-written reverse-mode backward.

    Works on a flat (batch, b, b) view, chunk by chunk on the CPU (about
    _CHUNK_BYTES per intermediate, so they stay in cache and are recycled).
    A small batch (input up to _SAVE_INPUT_BYTES, e.g. the 36,864 8x8 blocks
    of a ViT-Tiny's 12 layers, 9 MB) saves its polynomial and squares for the
    backward, which then reverses through them (about 2 s + 11 products). A
    larger one saves only its input and the backward recomputes each chunk's
    polynomial and squares first (5 + s more products): saving them would hold
    s full-size copies of the batch until the backward, which for the 12
    layers of a dense ViT-Tiny is over half a gigabyte of fresh, page-faulted
    buffers per step.
    """

    @staticmethod
    def forward(ctx, a: Tensor, static: bool, site: int | None, recompute: bool = False):
        if static:
            ctx.count, ctx.kept = "static", None
            ctx.save_for_backward(a)
            return _expm_forward(a, "static")[0]
        if recompute or not _keeps(a, site):
            ctx.kept = None
            ctx.save_for_backward(a)
            out, ctx.count = _forward_with_counts(a, site)
            return out
        out, _, kept = _expm_forward(a, None, save=True)
        ctx.count = None
        if kept is None:  # an empty batch
            ctx.kept = None
            ctx.save_for_backward(a)
        else:
            s, b, b2, b4, inner, mid, squares, plan = kept
            ctx.kept = (plan.common, plan.starts)
            ctx.save_for_backward(a, s, b, b2, b4, inner, mid, plan.order, *squares)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, *kept = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate
            return differentiable_vjp(a, grad), None, None, None
        if ctx.kept is None:
            return _expm_backward(a, grad, ctx.count), None, None, None
        common, starts = ctx.kept
        s, b, b2, b4, inner, mid, order, *squares = kept
        g = grad.reshape(-1, a.shape[-1], a.shape[-1]).to(b.dtype)
        g_a = _expm_chunk_backward(g, (s, b, b2, b4, inner, mid, squares, _Schedule(common, starts, order)))
        return g_a.to(a.dtype).view(a.shape), None, None, None


# Under torch.compile the exponential is one opaque operator: its body runs eagerly, so it reads the
# squaring count from the data (one host read per chunk, as in eager mode) instead of unrolling the
# static maximum of 24 squarings into the graph and keeping all of them for the backward (which made
# compiled LieRE-8 about 5x slower than eager). Export (ONNX) still traces the static form, which
# needs no custom operator in the exported file.
# As in eager mode, a small batch keeps its polynomial and squares for the backward. An operator's
# outputs need shapes known before it runs, so they travel in one float32 "pack" of _PACK_SLOTS slots
# (B, B^2, B^4, the two polynomial parts, up to _MAX_SQUARINGS_F32 squares) and a "counts" vector: the
# per-matrix squarings, the rows' sort order (or -1 and the first masked squaring, for a masked schedule),
# the first row of each squaring (padded to _MAX_SQUARINGS_F32), then the number of squarings (-1: "not
# kept: recompute", for chunks that ran in float64). Integers are exact in float32 below 2^24. Large
# batches return empty ones and recompute, as in eager mode.
_PACK_SLOTS = 5 + _MAX_SQUARINGS_F32


def _packs(a: Tensor, site: int | None) -> bool:
    """Whether the compiled operator keeps what its backward needs (decided from shape, dtype, device)."""
    return a.dtype == torch.float32 and _keeps(a, site)


def _pack_shapes(a: Tensor, site: int | None) -> tuple[tuple, tuple]:
    rows, n = a.numel() // (a.shape[-1] * a.shape[-1]), a.shape[-1]
    return ((_PACK_SLOTS, rows, n, n), (2 * rows + _MAX_SQUARINGS_F32 + 1,)) if _packs(a, site) else ((0,), (0,))


# ``site`` is -1 for none (a schema int cannot be None); it is a constant of the graph.
# The names carry the pack's layout version: inductor's on-disk graph cache keys a compiled graph by the
# operators it calls, not by what they return, so a new layout under the old name would meet cached code
# that asserts the old output shapes (as it did when the schedule joined the pack, layout 2).
@torch.library.custom_op("liere::skew_expm_ss_v2", mutates_args=())
def _expm_op(a: Tensor, site: int) -> tuple[Tensor, Tensor, Tensor]:
    site_ = None if site < 0 else site
    pack_shape, counts_shape = _pack_shapes(a, site_)
    if not pack_shape[0]:
        return _forward_with_counts(a, site_)[0], a.new_empty(pack_shape), a.new_empty(counts_shape)
    out, _, kept = _expm_forward(a, None, save=True)
    pack, counts = a.new_empty(pack_shape), a.new_empty(counts_shape)
    counts[-1] = -1.0
    if kept is not None and kept[1].dtype == torch.float32 and len(kept[6]) <= _MAX_SQUARINGS_F32:
        s, b, b2, b4, inner, mid, squares, plan = kept
        for i, t in enumerate((b, b2, b4, inner, mid, *squares)):
            pack[i].copy_(t)
        rows = s.shape[0]
        counts[:rows].copy_(s)
        if plan.order is None:  # masked: no order (-1), then the first masked squaring
            counts[rows], counts[2 * rows] = -1.0, float(plan.common)
        else:
            counts[rows : 2 * rows].copy_(plan.order)
            counts[2 * rows : 2 * rows + len(plan.starts)].copy_(torch.tensor(plan.starts, dtype=counts.dtype))
        counts[-1] = float(len(squares))
    return out, pack, counts


@_expm_op.register_fake
def _(a: Tensor, site: int) -> tuple[Tensor, Tensor, Tensor]:
    pack_shape, counts_shape = _pack_shapes(a, None if site < 0 else site)
    # Contiguous, as the real results (empty_like would copy a's strides).
    return a.new_empty(a.shape), a.new_empty(pack_shape), a.new_empty(counts_shape)


@torch.library.custom_op("liere::skew_expm_ss_v2_backward", mutates_args=())
def _expm_backward_op(a: Tensor, grad: Tensor, pack: Tensor, counts: Tensor, site: int) -> Tensor:
    loops = int(counts[-1]) if counts.numel() else -1  # only CPU batches and siteless calls pack
    if loops < 0:
        readback = _readback(a, None if site < 0 else site)
        count = None if readback is None else readback.count  # at least what the forward ran, or more
        return _expm_backward(a, grad, count)
    n, rows = a.shape[-1], pack.shape[1]
    b, b2, b4, inner, mid = pack[:5]
    if counts[rows] < 0:
        plan = _Schedule(int(counts[2 * rows]))
    else:
        starts = tuple(int(v) for v in counts[2 * rows : 2 * rows + loops].tolist())
        plan = _Schedule(0, starts, counts[rows : 2 * rows].to(torch.int64))
    saved = (counts[:rows], b, b2, b4, inner, mid, list(pack[5 : 5 + loops]), plan)
    g = grad.reshape(-1, n, n).to(b.dtype)
    return _expm_chunk_backward(g, saved).to(a.dtype).view(a.shape)


@_expm_backward_op.register_fake
def _(a: Tensor, grad: Tensor, pack: Tensor, counts: Tensor, site: int) -> Tensor:
    return a.new_empty(a.shape)


def _expm_op_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0], output[1], output[2])
    ctx.site = inputs[1]


def _expm_op_grad(ctx, grad: Tensor, _pack_grad, _counts_grad):
    a, pack, counts = ctx.saved_tensors
    return _expm_backward_op(a, grad, pack, counts, ctx.site), None


_expm_op.register_autograd(_expm_op_grad, setup_context=_expm_op_setup)


def expm_taylor_ss(a: Tensor, site: int | None = None, recompute: bool = False) -> Tensor:
    """General-size exponential by scaling and squaring (any square ``a``; exact for skew).

    ``site`` (from ``new_site()``) lets an accelerator reuse the squaring count of this caller's earlier
    calls instead of synchronising to read it; without it, each call on an accelerator reads it once.
    ``recompute`` makes an eager backward recompute the polynomial and squares instead of keeping them, whatever
    the batch's size (for a caller that makes many such batches per step, see ``BlockEncoding._compute``).
    """
    if exporting():
        return _ExpmTaylorSS.apply(a, True, None)
    if torch.compiler.is_compiling():
        if not _uses_readback(a, site) and cpu_kernel.supports_expm(a):
            return cpu_kernel.skew_expm_op(a)
        return _expm_op(a, -1 if site is None else site)[0]
    if not _uses_readback(a, site) and cpu_kernel.supports_expm(a):
        return cpu_kernel.skew_expm(a)
    return _ExpmTaylorSS.apply(a, False, site, recompute)


def skew_expm(a: Tensor, site: int | None = None, recompute: bool = False) -> Tensor:
    """exp(a) for a batch of skew-symmetric matrices (..., b, b), computed in the input dtype.

    Closed forms for b <= 4, scaling and squaring otherwise. Callers pass float32
    (or float64 for tests); half precision is not accurate enough for angles.
    ``recompute=True`` makes the backward of b >= 5 recompute the forward's intermediates even for a batch
    small enough to keep them (``expm_taylor_ss``).
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
    return expm_taylor_ss(a, site, recompute)

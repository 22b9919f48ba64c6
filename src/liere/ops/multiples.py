"""Rotations at positions that are whole multiples of others, by products instead of exponentials.

For a generator field linear in the position, A(p) = sum_k p_k A_k, the matrices A(a q) and A(b q) are
multiples of one matrix A(q) and commute, so

    R((a + b) q) = exp(A(a q) + A(b q)) = R(a q) R(b q)        (exact; a = b is a squaring).

On a grid that starts at the origin many positions are multiples of others: every point (i, j) with
gcd(i, j) >= 2 of an integer grid (26 of 63 non-zero points of an 8x8 one, about 1 - 6/pi^2 = 39% of a large one),
every point of a 1-D sequence; and R(0) = I. Each such rotation costs one product forward and two backward
instead of an exponential (dense LieRE's 64x64 blocks at the paper's initialisation: about 14 products forward
and 36 backward, 6.8 squarings on average). The origin costs nothing, and its generators' gradient there is
exactly zero (d/dA_k of exp(sum_k p_k A_k) carries the factor p_k = 0).

Only exact multiples count: g q == p in real arithmetic on the float32 values (checked in float64, where g q is
exact). A nearly-equal pair would not do: one float32 ulp of position moves a 64x64 rotation at the paper's
initialisation (|A| ~ 260) by ~1e-5, as much as the exponential's own error. LieRE's grid, i / (n - 1) per axis,
has p_2i = 2 p_i exactly (``liere.positions`` rounds each coordinate once), so its even points are products
(15 of the 63 non-zero points of an 8x8 grid); fl(3 fl(1/7)) is not fl(3/7), so odd multiples there are not.
The products' rounding is that of one more squaring: the result stays within the exponential's error bound
(a few float32 ulps times |A|, tests/ops/test_ops_expm.py).

``plan(positions)`` finds the multiples once per set of positions (host work, kept for reuse);
``from_multiples(blocks, plan)`` builds every position's blocks from those of the plan's ``base`` positions.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["Plan", "plan", "from_multiples"]

# Plans are found with (N, N, d) float64 arrays: 1,024 rows of 3-D positions are 25 MB. Larger sets (long
# sequences) are left to the exponential.
_MAX_ROWS = 1024
_PLANS: OrderedDict = OrderedDict()
_PLAN_CACHE = 16


class Plan(NamedTuple):
    """How to build N positions' rotations: ``base`` rows by the exponential (in that order), ``zero`` rows
    as the identity, then each level's ``targets`` as the products ``left @ right`` of rows made before."""

    n: int
    base: Tensor
    zero: Tensor
    levels: tuple[tuple[Tensor, Tensor, Tensor], ...]

    @property
    def derived(self) -> int:
        """How many rotations are not exponentials."""
        return self.n - len(self.base)


def plan(positions: Tensor) -> Plan | None:
    """The plan for positions (N, d) on the CPU, or None when no position is a multiple of another or zero."""
    if positions.ndim != 2 or positions.device.type != "cpu" or not 2 <= positions.shape[0] <= _MAX_ROWS:
        return None
    values = positions.detach()
    key = (values.dtype, tuple(values.shape), values.contiguous().numpy().tobytes())
    if key in _PLANS:
        _PLANS.move_to_end(key)
        return _PLANS[key]
    found = _find(values.double())
    _PLANS[key] = found
    while len(_PLANS) > _PLAN_CACHE:
        _PLANS.popitem(last=False)
    return found


def _find(p: Tensor) -> Plan | None:
    n = p.shape[0]
    if not bool(torch.isfinite(p).all()):
        return None
    zero = (p == 0).all(1)
    norm2 = (p * p).sum(1)
    # For each target i and candidate j: the nearest whole multiple g of p_j, and how far g p_j is from p_i.
    g = ((p @ p.T) / norm2.clamp_min(1e-300)).round()
    err = (g[..., None] * p[None] - p[:, None]).abs().amax(-1)
    ok = (g >= 2) & (err == 0) & ~zero[:, None] & ~zero[None]
    g = torch.where(ok, g, torch.zeros_like(g))
    best, root = g.max(1)  # the largest multiple: the most primitive position the target is found on
    has_root = best >= 2
    # A root must itself be primitive here (no root of its own); rows whose root is not are computed directly.
    rays: dict[int, list[tuple[int, int]]] = {}
    for i in range(n):
        if has_root[i] and not has_root[root[i]]:
            rays.setdefault(int(root[i]), []).append((int(best[i]), i))
    level = {}
    products: dict[int, list[tuple[int, int, int]]] = {}
    computed = set()
    for r, members in rays.items():
        made = {1: r}
        level[r] = 0
        for mult, i in sorted(members):
            if mult in made:  # the same position twice: computed directly
                continue
            # Of the splits mult = a + (mult - a) into positions made already, the one that is ready soonest
            # (fewest levels: fewer batched products, and fewer roundings on the way to this rotation).
            # (Splits are tried from the middle out, at most 16 of them: a long sequence would else cost
            # O(N^2) host work for a plan that balanced splits already make shallow.)
            splits = ((a, mult - a) for a in range((mult + 1) // 2, mult) if a in made and mult - a in made)
            pairs = [(max(level[made[a]], level[made[b]]), -a) for a, b in itertools.islice(splits, 16)]
            if not pairs:
                made[mult] = i
                level[i] = 0
                continue
            a = -min(pairs)[1]
            left, right = made[a], made[mult - a]
            level[i] = 1 + max(level[left], level[right])
            products.setdefault(level[i], []).append((i, left, right))
            computed.add(i)
            made[mult] = i
    zeros = [i for i in range(n) if zero[i]]
    if not computed and not zeros:
        return None
    base = [i for i in range(n) if i not in computed and not zero[i]]
    as_index = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    levels = tuple(tuple(as_index(list(column)) for column in zip(*products[k])) for k in sorted(products))
    return Plan(n, as_index(base), as_index(zeros), levels)


def from_multiples(blocks: Tensor, plan: Plan, dim: int = 3) -> Tensor:
    """All N positions' blocks from the base positions' ``blocks`` (their exponentials, along ``dim``, in the
    order of ``plan.base``): the identity at the origin, products elsewhere. Differentiable (twice as well)."""
    return _FromMultiples.apply(blocks, plan, dim)


def _build(base: Tensor, plan: Plan, dim: int) -> Tensor:
    shape = list(base.shape)
    shape[dim] = plan.n
    out = base.new_empty(shape)
    out.index_copy_(dim, plan.base, base)
    if len(plan.zero):
        eye = torch.eye(base.shape[-1], dtype=base.dtype, device=base.device)
        shape[dim] = len(plan.zero)
        out.index_copy_(dim, plan.zero, eye.expand(shape))
    for targets, left, right in plan.levels:
        out.index_copy_(dim, targets, out.index_select(dim, left) @ out.index_select(dim, right))
    return out


class _FromMultiples(torch.autograd.Function):
    """Forward in one buffer; the backward walks the levels back, accumulating in one gradient buffer
    (autograd through the indexing would zero-fill and sum a full-size gradient per gather). Only the output is
    kept: the products' operands are its rows, and the base blocks are not held a second time (dense per-layer
    LieRE would keep 12 x 4.7 MB more)."""

    @staticmethod
    def forward(ctx, base: Tensor, plan: Plan, dim: int) -> Tensor:
        out = _build(base, plan, dim)
        ctx.plan, ctx.dim = plan, dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (out,) = ctx.saved_tensors
        plan, dim = ctx.plan, ctx.dim
        # With create_graph=True the same steps run out of place, so that autograd can differentiate them (and,
        # through the kept output, this function again).
        again = torch.is_grad_enabled()
        g = grad.contiguous() if again else grad.contiguous().clone()
        for targets, left, right in reversed(plan.levels):
            g_t = g.index_select(dim, targets)
            to_left = g_t @ out.index_select(dim, right).mT
            to_right = out.index_select(dim, left).mT @ g_t
            if again:
                g = g.index_add(dim, left, to_left).index_add(dim, right, to_right)
            else:
                g.index_add_(dim, left, to_left).index_add_(dim, right, to_right)
        return g.index_select(dim, plan.base), None, None

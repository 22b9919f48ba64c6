"""Rotations at multiples of other positions made by products (liere.ops.multiples), against independent
references: float64 torch.linalg.matrix_exp at every position, a count by gcd, finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import liere
from liere.ops import multiples
from liere.positions import grid


def _oracle(enc, positions: torch.Tensor, layer: int = 0) -> torch.Tensor:
    """(H, N, D, D): float64 matrix_exp of sum_k p_k A_k at every position."""
    gens = enc.generators(layer).double()
    return torch.linalg.matrix_exp(torch.einsum("nd,dhij->hnij", positions.double(), gens).contiguous())


def test_plan_on_an_index_grid_finds_every_multiple_by_gcd():
    """On integer coordinates, (i, j) is a whole multiple of another grid point exactly when gcd(i, j) >= 2."""
    pos = grid((8, 8), "index")
    found = multiples.plan(pos)
    ij = [(i, j) for i in range(8) for j in range(8)]
    assert found.zero.tolist() == [0]
    assert sorted(found.base.tolist()) == [n for n, (i, j) in enumerate(ij) if math.gcd(i, j) == 1]
    assert found.derived - 1 == sum(1 for i, j in ij if (i, j) != (0, 0) and math.gcd(i, j) >= 2) == 26
    # a balanced split: 2q, 3q = 2q + q and 4q = 2q + 2q, 5q..7q from those: three levels
    assert len(found.levels) == 3


def test_plan_on_the_liere_grid_matches_exact_multiples_only():
    """LieRE's grid, i / 7 per axis: 2 fl(i/7) = fl(2i/7) exactly, but 3 fl(1/7) is not fl(3/7); only exact
    multiples count (a position a float32 ulp off would move a 64x64 rotation by ~1e-5 at the paper's
    initialisation). The derived points are the even ones, (2i, 2j) / 7."""
    pos = grid((8, 8), "liere")
    found = multiples.plan(pos)
    ij = [(i, j) for i in range(8) for j in range(8)]
    even = [n for n, (i, j) in enumerate(ij) if i % 2 == 0 and j % 2 == 0 and (i, j) != (0, 0)]
    assert sorted(set(range(64)) - set(found.base.tolist()) - {0}) == even


def test_plan_on_a_sequence_needs_one_exponential():
    found = multiples.plan(torch.arange(40, dtype=torch.float32)[:, None])
    assert found.base.tolist() == [1] and found.zero.tolist() == [0]
    assert len(found.levels) <= 7  # 39 = 2^5 + 7: about log2(39) + a few levels


def test_plan_is_none_without_multiples_and_positions_just_off_are_not_matched():
    torch.manual_seed(0)
    assert multiples.plan(torch.rand(20, 2) + 0.5) is None
    q = torch.tensor([[0.3, 0.7]])
    near = torch.cat((q, torch.nextafter(2 * q, torch.ones_like(q))))  # one float32 ulp off
    assert multiples.plan(near) is None
    exact = multiples.plan(torch.cat((q, 2 * q)))
    assert exact is not None and exact.base.tolist() == [0]


def test_from_multiples_gradients_match_finite_differences():
    """Any matrices, not only rotations: the products and the backward that walks them back, and its own
    derivative (create_graph), against float64 finite differences."""
    found = multiples.plan(torch.arange(8, dtype=torch.float32)[:, None] * 0.25)
    torch.manual_seed(1)
    base = torch.randn(1, 1, 2, len(found.base), 1, 3, 3, dtype=torch.float64, requires_grad=True)
    fn = lambda b: multiples.from_multiples(b, found, dim=3)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (base,))
    assert torch.autograd.gradgradcheck(fn, (base,))


@pytest.mark.parametrize("block_size", [8, 16, 32])
@pytest.mark.parametrize("shared", [True, False])
def test_rotation_on_a_grid_matches_float64_matrix_exp(block_size, shared):
    torch.manual_seed(block_size)
    enc = liere.build("liere", pos_dims=2, head_dim=32, num_heads=2, num_layers=3, share_layers=shared,
                      block_size=block_size)
    pos = grid((6, 6), enc.default_convention)
    assert multiples.plan(pos).derived >= 9  # the origin and (2i, 2j) / 5
    for layer in range(3):
        want = _oracle(enc, pos, layer)
        got = enc.rotation_matrix(pos, layer).double()
        # the exponential's own bound, a few float32 ulps times |A| (test_ops_expm), |A| <= 2 pi b per axis
        norm = torch.linalg.matrix_norm(torch.einsum("nd,dhij->hnij", pos.double(), enc.generators(layer).double()),
                                        2).max().item()
        assert (got - want).abs().max().item() <= 8 * math.sqrt(32) * 2.0 ** -24 * max(1.0, norm)


def test_gradients_on_a_grid_match_autograd_of_float64_matrix_exp():
    torch.manual_seed(3)
    enc = liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, block_size=16)
    pos = grid((5, 5), enc.default_convention)
    assert multiples.plan(pos).derived > 0
    weight = torch.randn(2, 25, 16, 16, dtype=torch.float64)
    got = torch.autograd.grad((enc.rotation_matrix(pos).double() * weight).sum(), enc.upper)[0]
    upper = enc.upper.detach().double().requires_grad_()
    rows, cols = torch.triu_indices(16, 16, offset=1)
    a = torch.zeros(*upper.shape[:-1], 16, 16, dtype=torch.float64)
    a[..., rows, cols] = upper
    gens = (a - a.mT)[0, :, :, 0]  # (d, H, 16, 16)
    want_r = torch.linalg.matrix_exp(torch.einsum("nd,dhij->hnij", pos.double(), gens).contiguous())
    want = torch.autograd.grad((want_r * weight).sum(), upper)[0]
    assert torch.allclose(got.double(), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


@settings(max_examples=25, deadline=None)
@given(direction=st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)),
       mults=st.lists(st.integers(0, 12), min_size=2, max_size=10))
def test_multiples_of_any_direction_match_float64_matrix_exp(direction, mults):
    """3-D positions g q for whole g (duplicates and the origin included) against the oracle."""
    q = torch.tensor(direction, dtype=torch.float32) * 0.2
    pos = torch.stack([g * q for g in mults])
    torch.manual_seed(len(mults))
    enc = liere.build("liere", pos_dims=3, head_dim=8, num_heads=1, block_size=8)
    got = enc.rotation_matrix(pos).double()
    want = _oracle(enc, pos)
    norm = max(1.0, max(mults) * 0.2 * 3 * 2 * math.pi * 8)
    assert (got - want).abs().max().item() <= 8 * math.sqrt(8) * 2.0 ** -24 * norm


def test_positions_that_need_a_gradient_and_batched_positions_take_the_exponential():
    enc = liere.build("liere", pos_dims=1, head_dim=8, num_heads=1, block_size=8)
    pos = torch.arange(6, dtype=torch.float32)[:, None].requires_grad_()
    assert enc._multiples_plan(pos[None]) is None
    enc.rotation(pos).blocks.sum().backward()
    assert pos.grad is not None and bool(torch.isfinite(pos.grad).all())
    assert enc._multiples_plan(torch.arange(6.0)[None, :, None].expand(2, -1, -1)) is None
    assert enc._multiples_plan(torch.arange(6.0)[None, :, None]) is not None

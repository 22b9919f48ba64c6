"""The fast paths (structure-aware rotations, packed/complex apply) against the dense float64 oracle."""

from __future__ import annotations

import pytest
import torch

import liere
from liere.encodings.base import BlockEncoding
from liere.ops.expm import expm_taylor_ss

METHODS = [("rope_axial", 2), ("rope_mixed", 2), ("comrope_ap", 4), ("comrope_ld", 4), ("comrope_ld", 3),
           ("liere", 2), ("liere", 4), ("liere", 8), ("liere", 16)]


@pytest.mark.parametrize("name,b", METHODS)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_rotation_and_apply_match_float64_matrix_exp(name, b, layout):
    torch.manual_seed(0)
    pe = liere.build(name, pos_dims=2, head_dim=18, num_heads=2, block_size=b, num_prefix_tokens=1, layout=layout)
    pos = liere.positions.grid((3, 2), pe.default_convention)
    gens = pe.generators().double()  # (d, H, D, D)
    full = torch.cat((torch.zeros(1, 2), pos)).double()  # the prefix token sits at the identity
    oracle = torch.linalg.matrix_exp(torch.einsum("nd,dhij->hnij", full, gens).contiguous())  # (H, N, D, D)
    oracle[:, 0] = torch.eye(18, dtype=torch.float64)
    got = pe.rotation_matrix(pos).double()
    assert (got - oracle).abs().max().item() < 1e-5
    q = torch.randn(3, 2, 7, 18) if layout == "bhnd" else torch.randn(3, 7, 2, 18)
    k = torch.randn_like(q)
    q2, k2 = pe(q, k, pos)
    qh = q if layout == "bhnd" else q.transpose(1, 2)
    want = torch.einsum("hnij,bhnj->bhni", oracle, qh.double())
    want = want if layout == "bhnd" else want.transpose(1, 2)
    assert (q2.double() - want).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["comrope_ap", "comrope_ld"])
def test_comrope_structure_aware_gradients_match_general_path(name):
    """The b = 4 closed form in t against the general exponential of t S, gradients included."""
    torch.manual_seed(1)
    pe = liere.build(name, pos_dims=2, head_dim=16, num_heads=2, block_size=4)
    pos = torch.rand(5, 2)
    fast = pe.rotation(pos).blocks
    general = expm_taylor_ss(BlockEncoding._blocks_at(pe, pos[None]))
    assert torch.allclose(fast, general, atol=2e-6)
    w = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * w).sum(), pe.matrices)[0]
    g_general = torch.autograd.grad((general * w).sum(), pe.matrices)[0]
    assert torch.allclose(g_fast, g_general, atol=1e-4, rtol=1e-4)

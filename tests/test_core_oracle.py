"""rotation_matrix and forward equal float64 matrix_exp of sum_k p_k A_k built from generators()."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import liere
from oracle import ROTARY, make, oracle_rotation


@pytest.mark.parametrize("name", ROTARY)
def test_rotation_matrix_matches_dense_oracle(name):
    pe = make(name)
    pos = liere.positions.grid((4, 4) if pe.pos_dims == 2 else (16,), "centers") * 3 - 1
    got = pe.rotation_matrix(pos).double()
    torch.testing.assert_close(got, oracle_rotation(pe, pos), atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_forward_equals_applying_the_oracle_matrix(name):
    pe = make(name)
    n = 16
    pos = torch.randn(n, pe.pos_dims)
    q, k = torch.randn(2, 3, 2, n, 16).unbind(0)
    q2, k2 = pe(q, k, pos)
    ref = oracle_rotation(pe, pos)  # (H, N, D, D)
    torch.testing.assert_close(q2.double(), torch.einsum("hnij,bhnj->bhni", ref, q.double()), atol=5e-5, rtol=0)
    torch.testing.assert_close(k2.double(), torch.einsum("hnij,bhnj->bhni", ref, k.double()), atol=5e-5, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_precomputed_rotation_equals_positions(name):
    pe = make(name)
    pos = torch.randn(9, pe.pos_dims)
    q, k = torch.randn(2, 2, 2, 9, 16).unbind(0)
    R = pe.rotation(pos)
    a = pe(q, k, pos)
    b = pe(q, k, R)
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=0, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_batched_positions_match_per_sample_oracle(name):
    pe = make(name)
    pos = torch.randn(3, 5, pe.pos_dims)
    q = torch.randn(3, 2, 5, 16)
    q2, _ = pe(q, q, pos)
    ref = oracle_rotation(pe, pos)  # (B, H, N, D, D)
    torch.testing.assert_close(q2.double(), torch.einsum("bhnij,bhnj->bhni", ref, q.double()), atol=5e-5, rtol=0)
    assert pe.rotation_matrix(pos).shape == (3, 2, 5, 16, 16)


@pytest.mark.parametrize("name", ROTARY)
def test_bnhd_layout_equals_bhnd(name):
    pe_a = make(name)
    pe_b = make(name, layout="bnhd")
    pe_b.load_state_dict(pe_a.state_dict())
    pos = torch.randn(6, pe_a.pos_dims)
    q = torch.randn(2, 2, 6, 16)
    qa, _ = pe_a(q, q, pos)
    qb, _ = pe_b(q.transpose(1, 2), q.transpose(1, 2), pos)
    torch.testing.assert_close(qb.transpose(1, 2), qa, atol=1e-6, rtol=0)


@given(
    name=st.sampled_from(["liere", "comrope_ap", "comrope_ld", "spherical", "rope_mixed"]),
    head_dim=st.integers(4, 20),
    heads=st.integers(1, 3),
    n=st.integers(1, 6),
    pos_dims=st.integers(1, 3),
    data=st.data(),
)
def test_oracle_property_over_shapes(name, head_dim, heads, n, pos_dims, data):
    block = None
    if name == "liere":
        block = data.draw(st.integers(2, head_dim), label="block_size")
    if name.startswith("comrope"):
        block = data.draw(st.integers(2, min(head_dim, 6)), label="block_size")
    if name == "spherical" and head_dim < 3:
        return
    pe = liere.build(name, pos_dims=pos_dims, head_dim=head_dim, num_heads=heads, block_size=block, init_scale=0.3) \
        if name == "liere" else liere.build(name, pos_dims=pos_dims, head_dim=head_dim, num_heads=heads, block_size=block)
    scale = data.draw(st.sampled_from([0.01, 1.0, 5.0]), label="scale")
    pos = scale * torch.randn(n, pos_dims)
    torch.testing.assert_close(pe.rotation_matrix(pos).double(), oracle_rotation(pe, pos), atol=1e-4, rtol=0)

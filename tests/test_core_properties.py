"""Group properties, block structure, commutators and the relative-position identity."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import liere
from oracle import COMMUTING, ROTARY, make, oracle_rotation


def _eye(d):
    return torch.eye(d, dtype=torch.float64)


@pytest.mark.parametrize("name", ROTARY)
def test_orthogonal_identity_at_zero_and_inverse(name):
    pe = make(name)
    pos = torch.randn(7, pe.pos_dims) * 2
    R = pe.rotation_matrix(pos).double()
    torch.testing.assert_close(R @ R.mT, _eye(16).expand_as(R), atol=1e-5, rtol=0)
    R0 = pe.rotation_matrix(torch.zeros(3, pe.pos_dims)).double()
    torch.testing.assert_close(R0, _eye(16).expand_as(R0), atol=1e-6, rtol=0)
    if not pe.composes_axes:  # R(-p) = R(p)^T holds for exp(G(p)); a product of exponentials reverses its order
        torch.testing.assert_close(pe.rotation_matrix(-pos).double(), R.mT, atol=1e-5, rtol=0)


def test_spherical_inverse_is_reversed_product():
    pe = make("spherical")
    pos = torch.randn(5, 2)
    A = pe.generators().double()
    for n in range(5):
        Rx = torch.linalg.matrix_exp(pos[n, 0].double() * A[0])
        Ry = torch.linalg.matrix_exp(pos[n, 1].double() * A[1])
        torch.testing.assert_close(pe.rotation_matrix(pos).double()[:, n], Rx @ Ry, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name, head_dim, block",
    [("liere", 10, 4), ("liere", 16, 16), ("comrope_ap", 11, 4), ("comrope_ld", 14, 4), ("spherical", 16, 3),
     ("rope_mixed", 9, 2), ("rope_axial", 13, 2), ("rope", 7, 2)],
)
def test_block_diagonal_with_untouched_leftover_channels(name, head_dim, block):
    pe = make(name, head_dim=head_dim, block_size=block)
    pos = torch.randn(5, pe.pos_dims)
    x = torch.randn(2, 2, 5, head_dim)
    y, _ = pe(x, x, pos)
    rotated = (head_dim // block) * block
    assert torch.equal(y[..., rotated:], x[..., rotated:])
    mask = torch.block_diag(*[torch.ones(block, block)] * (head_dim // block), torch.eye(head_dim - rotated)).bool()
    for A in (pe.generators(), pe.rotation_matrix(pos)):
        assert A[..., ~mask].abs().sum() == 0
    A = pe.generators().double()
    torch.testing.assert_close(A, -A.mT, atol=0, rtol=0)


def _commutator_norm(pe):
    A = pe.generators().double()
    worst = 0.0
    for i in range(A.shape[0]):
        for j in range(A.shape[0]):
            worst = max(worst, (A[i] @ A[j] - A[j] @ A[i]).abs().max().item())
    # Relative to |A|^2: float32 parameters make products exact only to ~1e-7.
    return worst / max(A.abs().max().item() ** 2, 1e-30)


@pytest.mark.parametrize("name", COMMUTING)
def test_commuting_methods_have_zero_commutators(name):
    pe = make(name, pos_dims=3) if name != "rope" else make(name)
    assert _commutator_norm(pe) < 1e-6


@pytest.mark.parametrize("name, block", [("liere", 3), ("liere", 4), ("liere", 8), ("spherical", 3)])
def test_noncommuting_methods_have_nonzero_commutators(name, block):
    pe = make(name, block_size=block)
    assert _commutator_norm(pe) > 1e-2
    assert pe.commuting is False


def test_liere_block_two_commutes():
    assert _commutator_norm(make("liere", block_size=2)) < 1e-6


@pytest.mark.parametrize("name", COMMUTING)
@given(data=st.data())
def test_relative_identity(name, data):
    pe = make(name)
    d = pe.pos_dims
    p = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=d, max_size=d), label="p"))
    p2 = torch.tensor(data.draw(st.lists(st.floats(-3, 3), min_size=d, max_size=d), label="p2"))
    q, k = torch.randn(2, 1, 2, 1, 16).double().unbind(0)
    Rp, Rp2, Rd = (pe.rotation_matrix(x[None]).double()[:, 0] for x in (p, p2, p2 - p))
    lhs = torch.einsum("hij,bhnj,hik,bhnk->bh", Rp, q, Rp2, k)
    rhs = torch.einsum("bhni,hij,bhnj->bh", q, Rd, k)
    torch.testing.assert_close(lhs, rhs, atol=1e-4, rtol=1e-4)


def test_liere_is_not_relative():
    pe = make("liere", block_size=8)
    q, k = torch.randn(2, 1, 2, 1, 16).double().unbind(0)
    p, p2, shift = torch.tensor([0.3, -0.2]), torch.tensor([0.9, 0.4]), torch.tensor([0.5, 0.5])
    def score(a, b):
        Ra, Rb = (pe.rotation_matrix(x[None]).double()[:, 0] for x in (a, b))
        return torch.einsum("hij,bhnj,hik,bhnk->bh", Ra, q, Rb, k)
    assert (score(p, p2) - score(p + shift, p2 + shift)).abs().max() > 1e-3


def test_prefix_tokens_get_identity_or_chosen_position():
    pe = make("liere", num_prefix_tokens=2)
    pos = torch.randn(4, 2)
    R = pe.rotation_matrix(pos)
    assert R.shape == (2, 6, 16, 16)
    torch.testing.assert_close(R[:, :2], torch.eye(16).expand(2, 2, 16, 16), atol=0, rtol=0)
    torch.testing.assert_close(R[:, 2:].double(), oracle_rotation(pe, pos), atol=2e-5, rtol=0)
    chosen = make("liere", num_prefix_tokens=1, prefix_position=[0.5, -0.5])
    chosen.load_state_dict(pe.state_dict())
    R2 = chosen.rotation_matrix(pos)
    torch.testing.assert_close(R2[:, 1:], R[:, 2:], atol=1e-6, rtol=0)
    torch.testing.assert_close(R2[:, 0].double(), oracle_rotation(pe, torch.tensor([[0.5, -0.5]]))[:, 0], atol=2e-5, rtol=0)
    # q and k carry the prefix tokens on the token axis.
    q = torch.randn(1, 2, 6, 16)
    q2, _ = pe(q, q, pos)
    torch.testing.assert_close(q2[:, :, :2], q[:, :, :2], atol=0, rtol=0)


def test_axial_splits_pairs_between_axes_when_d_does_not_divide():
    pe = liere.build("rope_axial", pos_dims=3, head_dim=16, num_heads=1)  # 8 pairs over 3 axes: 3, 3, 2
    A = pe.generators()[:, 0]
    owned = [(A[k].abs().sum(0) > 0).nonzero().flatten().tolist() for k in range(3)]
    assert owned == [list(range(0, 6)), list(range(6, 12)), list(range(12, 16))]
    # Each axis' first pair turns at frequency 1 (theta^0), the next at theta^(-1/m).
    assert A[0, 1, 0].item() == pytest.approx(1.0)
    assert A[2, 15, 14].item() == pytest.approx(100 ** (-1 / 2))


def test_rope_1d_frequencies_follow_the_formula():
    pe = liere.build("rope", pos_dims=1, head_dim=8, num_heads=1)
    pos = torch.tensor([[3.0]])
    R = pe.rotation_matrix(pos)[0, 0].double()
    for j in range(4):
        angle = 3.0 * 10000 ** (-2 * j / 8)
        expected = torch.tensor([[torch.cos(torch.tensor(angle)), -torch.sin(torch.tensor(angle))],
                                 [torch.sin(torch.tensor(angle)), torch.cos(torch.tensor(angle))]], dtype=torch.float64)
        torch.testing.assert_close(R[2 * j : 2 * j + 2, 2 * j : 2 * j + 2], expected, atol=1e-6, rtol=0)


def test_comrope_ap_block_owned_by_axis_j_mod_d():
    pe = liere.build("comrope_ap", pos_dims=3, head_dim=20, num_heads=1, block_size=4)
    A = pe.generators()[:, 0]
    for j in range(5):
        for k in range(3):
            block = A[k, 4 * j : 4 * j + 4, 4 * j : 4 * j + 4]
            assert (block.abs().max() > 0) == (j % 3 == k)


def test_comrope_ld_generators_are_scaled_copies():
    pe = liere.build("comrope_ld", pos_dims=2, head_dim=8, num_heads=1, block_size=4)
    A = pe.generators()[:, 0].double()
    for j in range(2):
        a0, a1 = A[0, 4 * j : 4 * j + 4, 4 * j : 4 * j + 4], A[1, 4 * j : 4 * j + 4, 4 * j : 4 * j + 4]
        ratio = pe.scales[0, 1, 0, j].double() / pe.scales[0, 0, 0, j].double()
        torch.testing.assert_close(a1, ratio * a0, atol=1e-6, rtol=1e-6)


def test_liere_initialisation_is_uniform_0_2pi_on_upper_triangle():
    pe = liere.build("liere", pos_dims=2, head_dim=64, num_heads=6, block_size=64)
    u = pe.upper.detach()
    assert u.min() >= 0 and u.max() < 2 * torch.pi
    assert abs(u.mean().item() - torch.pi) < 0.05
    A = pe.generators()  # (d, H, D, D): entry (0, 1) is the first upper-triangle parameter, (1, 0) its negative
    torch.testing.assert_close(A[:, :, 0, 1], u[0, :, :, 0, 0])
    torch.testing.assert_close(A[:, :, 1, 0], -u[0, :, :, 0, 0])


def test_rope_mixed_initialisation_magnitudes_and_random_directions():
    pe = liere.build("rope_mixed", pos_dims=2, head_dim=64, num_heads=6)
    f = pe.freqs.detach()[0]  # (d, H, M)
    mags = f.norm(dim=0)  # (H, M)
    j = torch.arange(16, dtype=torch.float32)
    expected = 1.0 / 10 ** (4 * j / 64)
    torch.testing.assert_close(mags, torch.cat([expected, expected]).expand(6, 32), atol=1e-6, rtol=1e-5)
    # The two groups point in orthogonal directions, rotated differently per head.
    directions = f[:, :, 0] / f[:, :, 0].norm(dim=0)
    assert (directions[:, 0] - directions[:, 1]).abs().max() > 1e-3
    torch.testing.assert_close((f[:, :, 0] * f[:, :, 16]).sum(0), torch.zeros(6), atol=1e-6, rtol=0)


def test_share_heads_and_layers_shapes():
    pe = liere.build("liere", pos_dims=2, head_dim=8, num_heads=4, block_size=4, num_layers=3, share_heads=True)
    assert pe.upper.shape[:3] == (3, 2, 1)
    R = pe.rotation(torch.randn(5, 2))
    assert R.num_layers == 3 and R.num_heads == 1
    shared = liere.build("liere", pos_dims=2, head_dim=8, num_heads=4, block_size=4, num_layers=3, share_layers=True)
    assert shared.rotation(torch.randn(5, 2)).num_layers == 1
    G = pe.generators(layer=2)
    torch.testing.assert_close(G[:, 0], G[:, 3])

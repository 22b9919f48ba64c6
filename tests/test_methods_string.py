"""STRING (Cayley and circulant), 1-D LieRE = STRING, folding the basis, and partial rotation (rotary_dim)."""

import math

import pytest
import torch

import liere
from liere.encodings.string import cayley, circulant
from liere.models import build_model
from oracle import ROTARY, make, oracle_rotation


def _logits(pe, q, k, pos):
    q2, k2 = pe(q, k, pos)
    return q2.double() @ k2.double().transpose(-1, -2)  # (B, H, N, N): every pair of positions


def _real_schur_of_skew(a: torch.Tensor):
    """A = P blockdiag(f_j J) P^T for skew A (D even, generic), from the eigenvectors of the Hermitian iA.

    For an eigenpair iA v = w v, w > 0, v = x + iy: A x = w y and A y = -w x, with x and y orthogonal
    and of norm 1/sqrt(2). The real basis is (sqrt2 x, sqrt2 y) per pair, det fixed to +1.
    """
    w, v = torch.linalg.eigh(1j * a.to(torch.complex128))
    v = v[:, w > 0]
    cols = []
    for j in range(v.shape[1]):
        cols += [math.sqrt(2) * v[:, j].real, math.sqrt(2) * v[:, j].imag]
    p = torch.stack(cols, 1)
    if torch.linalg.det(p) < 0:  # swap one pair: the plane is the same, turned the other way
        p[:, [0, 1]] = p[:, [1, 0]]
    freqs = torch.stack([p[:, 2 * j + 1] @ a @ p[:, 2 * j] for j in range(p.shape[1] // 2)])
    return p, freqs


def test_1d_liere_equals_string_with_its_real_schur_form():
    """1-D LieRE with a dense generator A is STRING with P and frequencies from A's real Schur form."""
    torch.manual_seed(0)
    d, h = 16, 2
    # In float64, so that the identity is tested to 1e-9 rather than to float32 rounding of two paths.
    lie = liere.build("liere", pos_dims=1, head_dim=d, num_heads=h, block_size=d).double()
    string = liere.build("string", pos_dims=1, head_dim=d, num_heads=h).double()
    gens = lie.generators().detach()[0]  # (H, D, D)
    rows, cols = torch.triu_indices(d, d, offset=1)
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        for head in range(h):
            p, f = _real_schur_of_skew(gens[head])
            torch.testing.assert_close(p @ p.T, eye, atol=1e-12, rtol=0)
            block = torch.block_diag(*[fj * torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64) for fj in f])
            torch.testing.assert_close(p @ block @ p.T, gens[head], atol=1e-10, rtol=0)
            s = torch.linalg.solve((eye + p).T, (eye - p).T).T  # inverse Cayley: S = (I - P)(I + P)^-1
            string.skew_upper[0, head] = s[rows, cols]
            string.freqs[0, 0, head] = f
        torch.testing.assert_close(string.basis()[0], torch.stack(
            [_real_schur_of_skew(gens[i])[0] for i in range(h)]), atol=1e-10, rtol=0)
    pos = liere.positions.grid((64,), "liere").double()  # LieRE's positions in [0, 1]
    q, k = torch.randn(2, 3, h, 64, d, dtype=torch.float64).unbind(0)
    a, b = _logits(lie, q, k, pos), _logits(string, q, k, pos)
    scale = a.abs().max()
    err = (a - b).abs().max() / scale
    assert err < 1e-9, f"largest logit difference {err:.2e} of the largest logit"
    torch.testing.assert_close(string.generators(), lie.generators(), atol=1e-9, rtol=0)


def test_cayley_is_orthogonal_and_string_starts_as_rope_mixed():
    s = torch.randn(3, 6, 6)
    s = s - s.transpose(-1, -2)
    p = cayley(s)
    torch.testing.assert_close(p @ p.transpose(-1, -2), torch.eye(6).expand(3, 6, 6), atol=1e-5, rtol=0)
    torch.manual_seed(1)
    mixed = liere.build("rope_mixed", pos_dims=2, head_dim=16, num_heads=2)
    torch.manual_seed(1)
    string = liere.build("string", pos_dims=2, head_dim=16, num_heads=2)
    pos = torch.randn(7, 2)
    torch.testing.assert_close(string.rotation_matrix(pos), mixed.rotation_matrix(pos), atol=1e-6, rtol=0)


def test_string_learns_its_basis():
    pe = make("string")
    q = torch.randn(1, 2, 5, 16, requires_grad=True)
    q2, k2 = pe(q, q, torch.randn(5, 2))
    (q2 * torch.randn_like(q2)).sum().backward()
    assert pe.skew_upper.grad is not None and pe.skew_upper.grad.abs().sum() > 0


def test_circulant_generators_are_circulant_skew_and_commute():
    pe = make("string_circulant")
    gens = pe.generators().detach()  # (d, H, D, D)
    c = gens[..., :, 0]  # first columns
    torch.testing.assert_close(gens, circulant(c), atol=0, rtol=0)
    torch.testing.assert_close(gens, -gens.transpose(-1, -2), atol=0, rtol=0)
    comm = gens[0] @ gens[1] - gens[1] @ gens[0]
    assert comm.abs().max() < 1e-5


@pytest.mark.parametrize("head_dim", [16, 15])
def test_circulant_rotation_is_an_fft_multiplier(head_dim):
    """R(p) x = ifft(exp(lambda(p)) fft(x)), lambda(p) the DFT of G(p)'s first column: O(D log D) per token."""
    pe = make("string_circulant", head_dim=head_dim)
    pos = torch.randn(9, 2)
    x = torch.randn(1, 2, 9, head_dim)
    got, _ = pe(x, x, pos)
    g = torch.einsum("nd,dhij->hnij", pos.double(), pe.generators().detach().double())[..., :, 0]  # (H, N, D)
    lam = torch.fft.fft(g)  # eigenvalues of the circulant G(p): purely imaginary
    assert lam.real.abs().max() < 1e-9
    ref = torch.fft.ifft(torch.exp(lam) * torch.fft.fft(x.double()[0])).real
    torch.testing.assert_close(got.double()[0], ref, atol=2e-5, rtol=0)


@pytest.mark.parametrize("name", ["string", "string_circulant"])
@pytest.mark.parametrize("share_layers", [False, True])
def test_fold_position_basis_leaves_outputs_unchanged(name, share_layers):
    torch.manual_seed(0)
    model = build_model("vit", "micro", name, input_shape=(16, 16), patch_size=4, num_classes=5, depth=2,
                        share_layers=share_layers).eval()
    with torch.no_grad():
        for p in model.pe.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        model.fold_position_basis()
        after = model(x)
    assert model.pe.folded and model.pe.rotation(torch.randn(4, 2)).basis is None
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_fold_position_basis_needs_a_basis():
    model = build_model("vit", "micro", "rope_mixed", input_shape=(16, 16), patch_size=4, num_classes=5, depth=1)
    with pytest.raises(ValueError, match="no position basis"):
        model.fold_position_basis()


# ----- partial rotation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("rotary_dim", [8, 12, 16])
def test_rope_rotary_dim_matches_rotary_embedding_torch(rotary_dim):
    ret = pytest.importorskip("rotary_embedding_torch")
    d, n = 24, 11
    ref = ret.RotaryEmbedding(dim=rotary_dim, theta=10000)
    pe = liere.build("rope", pos_dims=1, head_dim=d, num_heads=2, rotary_dim=rotary_dim)
    q = torch.randn(2, 2, n, d)
    got, _ = pe(q, q, torch.arange(n, dtype=torch.float32)[:, None])
    torch.testing.assert_close(got, ref.rotate_queries_or_keys(q), atol=2e-5, rtol=0)
    torch.testing.assert_close(got[..., rotary_dim:], q[..., rotary_dim:], atol=0, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_rotary_dim_rotates_the_first_channels_only(name):
    """Every rotary method: channels past rotary_dim pass through; the first ones turn as a head of rotary_dim."""
    r, d = 8, 16
    part = make(name, head_dim=d, rotary_dim=r, block_size=4 if name == "liere" else None)
    whole = make(name, head_dim=r, block_size=4 if name == "liere" else None)
    part.load_state_dict(whole.state_dict())
    pos = torch.randn(6, part.pos_dims)
    q = torch.randn(2, 2, 6, d)
    got, _ = part(q, q, pos)
    ref, _ = whole(q[..., :r].contiguous(), q[..., :r].contiguous(), pos)
    torch.testing.assert_close(got[..., :r], ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(got[..., r:], q[..., r:], atol=0, rtol=0)
    torch.testing.assert_close(part.rotation_matrix(pos).double(), oracle_rotation(part, pos), atol=2e-5, rtol=0)


def test_rotary_dim_errors():
    with pytest.raises(ValueError, match="rotary_dim"):
        liere.build("rope_mixed", pos_dims=2, head_dim=16, num_heads=2, rotary_dim=32)
    with pytest.raises(ValueError, match="block_size"):
        liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, rotary_dim=4, block_size=8)


@pytest.mark.parametrize("method", ["string", "string_circulant"])
def test_string_methods_refuse_half_pairing_in_one_line(method):
    with pytest.raises(ValueError, match=r"^pairing: .*interleaved"):
        liere.build(method, pos_dims=2, head_dim=16, num_heads=2, pairing="half")


def test_string_starts_exactly_from_pretrained_rope_frequencies():
    """The LieRE upgrade path's `string` start (issue 14): RoPE-Mixed's frequencies and S = 0 give the same
    rotation as the pretrained RoPE; the skew parameters then receive gradients."""
    from liere.integrations.timm_rope import init_from_frequencies

    torch.manual_seed(3)
    kw = dict(pos_dims=2, head_dim=16, num_heads=2, num_layers=2)
    rope = liere.build("rope_mixed", **kw)
    with torch.no_grad():
        rope.freqs.mul_(3.0)                                   # anything but string's own initial frequencies
    string = liere.build("string", **kw)
    with torch.no_grad():
        string.skew_upper.normal_()                            # a non-identity basis before the start is set
    init_from_frequencies(string, rope.freqs.detach())
    pos = torch.rand(7, 2) * 8
    for layer in range(2):
        want = rope.rotation_matrix(pos, layer=layer).double()
        got = string.rotation_matrix(pos, layer=layer).double()
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    q = torch.randn(1, 2, 7, 16)
    out_q, out_k = string(q, q, pos)
    (out_q * torch.randn_like(out_q)).sum().backward()
    assert string.skew_upper.grad is not None and string.skew_upper.grad.abs().sum() > 0

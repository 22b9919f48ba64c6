"""``pairing="half"`` (channel m with m + D/2, as rotate_half) against the interleaved default and references."""

import pytest
import torch

import liere
from liere.pairing import from_interleaved, permutation, to_interleaved
from oracle import ROTARY, make, oracle_rotation


def _pair(name, **options):
    torch.manual_seed(0)
    half = make(name, pairing="half", **options)
    torch.manual_seed(0)
    inter = make(name, **options)
    return half, inter


def test_permutation_is_the_half_split_interleaving():
    assert permutation(6).tolist() == [0, 3, 1, 4, 2, 5]
    x = torch.randn(3, 10)
    torch.testing.assert_close(from_interleaved(to_interleaved(x)), x, atol=0, rtol=0)
    torch.testing.assert_close(to_interleaved(x), x[:, permutation(10)], atol=0, rtol=0)


# STRING (issue 12) carries a learned dense basis P in its Rotation; its pairing is not wired yet.
PAIRED = [name for name in ROTARY if not name.startswith("string")]


@pytest.mark.parametrize("name", PAIRED)
def test_half_gives_the_interleaved_logits_after_the_permutation(name):
    half, inter = _pair(name)
    d = 1 if name == "rope" else 2
    pos = torch.rand(7, d) * 3
    q, k = torch.randn(2, 2, 7, 16), torch.randn(2, 2, 7, 16)
    qh, kh = half(q, k, pos)
    qi, ki = inter(to_interleaved(q), to_interleaved(k), pos)
    torch.testing.assert_close(qh @ kh.transpose(-1, -2), qi @ ki.transpose(-1, -2), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(to_interleaved(qh), qi, atol=1e-5, rtol=0)  # the same rotation, relabelled channels
    # The dense matrix and the generators are in the half-split channels: the oracle holds there too.
    torch.testing.assert_close(half.rotation_matrix(pos).double(), oracle_rotation(half, pos), atol=1e-4, rtol=0)
    if name not in ("rope", "rope_axial", "visionllama", "rope_mixed"):
        return
    # 2x2 methods: half pairs are exactly (m, m + D/2).
    gen = half.generators()[0, 0]
    m = 3
    assert gen[m, m + 8] != 0 and gen[m, m + 1] == 0


def test_half_rope_equals_rotate_half_by_hand():
    """1-D RoPE with pairing="half" is q * cos + rotate_half(q) * sin (GPT-NeoX / Llama / HF)."""
    pe = liere.build("rope", pos_dims=1, head_dim=16, num_heads=2, pairing="half", theta=10000.0)
    pos = torch.arange(9.0)[:, None]
    q = torch.randn(2, 2, 9, 16)
    inv = 1.0 / 10000.0 ** (torch.arange(0, 16, 2).float() / 16)
    angles = torch.cat((pos * inv, pos * inv), -1)  # (N, D)
    rotate_half = lambda x: torch.cat((-x[..., 8:], x[..., :8]), -1)  # noqa: E731
    want = q * angles.cos() + rotate_half(q) * angles.sin()
    got, _ = pe(q, q, pos)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_half_rope_equals_hugging_face_apply_rotary_pos_emb():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    pe = liere.build("rope", pos_dims=1, head_dim=16, num_heads=2, pairing="half", theta=10000.0)
    pos = torch.arange(9.0)[:, None]
    q, k = torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    inv = 1.0 / 10000.0 ** (torch.arange(0, 16, 2).float() / 16)
    emb = torch.cat((pos * inv, pos * inv), -1)
    want_q, want_k = llama.apply_rotary_pos_emb(q, k, emb.cos()[None], emb.sin()[None])
    got_q, got_k = pe(q, k, pos)
    torch.testing.assert_close(got_q, want_q, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_k, want_k, atol=1e-5, rtol=0)


def test_bad_pairing_is_a_clear_error():
    with pytest.raises(ValueError, match="pairing"):
        liere.build("rope_axial", pos_dims=2, head_dim=16, num_heads=2, pairing="split")
    with pytest.raises(ValueError, match="even head_dim"):
        liere.build("spherical", pos_dims=2, head_dim=9, num_heads=2, pairing="half")

"""The functional API on any tensor: liere.apply_rotation with Rotation sliced by layer, head and token.

Every case is checked against the float64 dense oracle of the *full* position set,
selected afterwards (tokens, heads, samples): slicing a rotation must be the same
as slicing the dense matrices.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import liere

from ._helpers import ROTARY, build, oracle_with_prefix, rotate_dense

ATOL = 5e-5
P, N, B, H, D = 1, 12, 3, 2, 16


def setup(name, **options):
    pe = build(name, num_prefix_tokens=P, **options)
    pos = torch.randn(N, 2)
    return pe, pos, pe.rotation(pos), oracle_with_prefix(pe, pos)  # oracle: (H, P+N, D, D)


@pytest.mark.parametrize("name", ROTARY)
def test_apply_rotation_matches_oracle_for_both_layouts(name):
    pe, pos, R, ref = setup(name)
    x = torch.randn(B, H, P + N, D)
    want = rotate_dense(ref, x)
    torch.testing.assert_close(liere.apply_rotation(x, R).double(), want, atol=ATOL, rtol=0)
    got = liere.apply_rotation(x.transpose(1, 2).contiguous(), R, layout="bnhd")
    torch.testing.assert_close(got.transpose(1, 2).double(), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_kv_cache_decoding_one_token_at_a_time(name):
    """Rotating token t alone with R.tokens(slice(t, t+1)) equals row t of the full rotation."""
    pe, pos, R, ref = setup(name)
    x = torch.randn(B, H, P + N, D)
    cache = [liere.apply_rotation(x[:, :, t : t + 1], R.tokens(slice(t, t + 1))) for t in range(P + N)]
    torch.testing.assert_close(torch.cat(cache, 2).double(), rotate_dense(ref, x), atol=ATOL, rtol=0)
    # An int index keeps the token axis, as a KV cache append needs.
    last = liere.apply_rotation(x[:, :, -1:], R.tokens(-1))
    torch.testing.assert_close(last.double(), rotate_dense(ref[:, -1:], x[:, :, -1:]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_head_subset(name):
    pe, pos, R, ref = setup(name)
    heads = torch.tensor([1])
    x = torch.randn(B, 1, P + N, D)
    got = liere.apply_rotation(x, R.heads(heads))
    torch.testing.assert_close(got.double(), rotate_dense(ref[heads], x), atol=ATOL, rtol=0)
    got = liere.apply_rotation(x, R.heads(slice(0, 1)))
    torch.testing.assert_close(got.double(), rotate_dense(ref[:1], x), atol=ATOL, rtol=0)


def test_head_shared_rotation_slices_to_any_head_count():
    pe, pos, R, ref = setup("liere", share_heads=True)
    assert R.num_heads == 1 and R.heads(torch.tensor([0, 1])).num_heads == 1
    x = torch.randn(B, 5, P + N, D)  # any number of heads broadcasts against a shared rotation
    got = liere.apply_rotation(x, R.heads(slice(0, 1)))
    torch.testing.assert_close(got.double(), rotate_dense(ref[:1].expand(5, -1, -1, -1), x), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ROTARY)
def test_mae_token_dropping_per_sample(name):
    """Encoder sees CLS + K kept patches per sample: R.tokens((B, K)) equals the oracle gathered per sample,
    and equals computing the rotation at the kept positions directly."""
    pe, pos, R, ref = setup(name)
    g = torch.Generator().manual_seed(1)
    k_keep = 5
    kept = torch.stack([torch.randperm(N, generator=g)[:k_keep] for _ in range(B)])  # (B, K) patch indices
    index = torch.cat((torch.arange(P).expand(B, P), P + kept), 1)  # keep the prefix tokens
    x = torch.randn(B, H, P + N, D)
    x_kept = torch.stack([x[b][:, index[b]] for b in range(B)])  # (B, H, P+K, D)
    R_kept = R.tokens(index)
    assert R_kept.batch_size == B and R_kept.num_tokens == P + k_keep
    got = liere.apply_rotation(x_kept, R_kept)
    want = torch.stack([rotate_dense(ref[:, index[b]], x_kept[b : b + 1])[0] for b in range(B)])
    torch.testing.assert_close(got.double(), want, atol=ATOL, rtol=0)
    # Same as the rotation of the kept positions, (B, K, d) per-sample positions.
    direct = liere.apply_rotation(x_kept, pe.rotation(pos[kept]))
    torch.testing.assert_close(direct, got, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["liere", "rope_mixed", "spherical"])
def test_packed_sequences_with_per_sample_positions(name):
    """(B, N, d) positions: sample b is rotated by its own positions only."""
    pe = build(name, num_prefix_tokens=P)
    pos = torch.randn(B, N, 2) * 2
    R = pe.rotation(pos)
    assert R.batch_size == B
    x = torch.randn(B, H, P + N, D)
    got = liere.apply_rotation(x, R)
    torch.testing.assert_close(got.double(), rotate_dense(oracle_with_prefix(pe, pos), x), atol=ATOL, rtol=0)
    for b in range(B):
        alone = liere.apply_rotation(x[b : b + 1], pe.rotation(pos[b]))
        torch.testing.assert_close(got[b : b + 1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["liere", "comrope_ld", "rope_mixed", "spherical"])
def test_per_layer_rotation(name):
    pe = build(name, num_layers=3, num_prefix_tokens=P)
    pos = torch.randn(N, 2)
    R = pe.rotation(pos)
    assert R.num_layers == 3
    x = torch.randn(B, H, P + N, D)
    with pytest.raises(ValueError, match="layer"):
        liere.apply_rotation(x, R)
    for i in range(3):
        want = rotate_dense(oracle_with_prefix(pe, pos, layer=i), x)
        torch.testing.assert_close(liere.apply_rotation(x, R, layer=i).double(), want, atol=ATOL, rtol=0)
        torch.testing.assert_close(liere.apply_rotation(x, R.layer(i)).double(), want, atol=ATOL, rtol=0)


def test_dense_equals_oracle_and_slices_commute_with_dense():
    pe, pos, R, ref = setup("liere", num_layers=2)
    dense = R.dense()  # (L, 1, H, P+N, D, D)
    torch.testing.assert_close(dense[1, 0].double(), oracle_with_prefix(pe, pos, layer=1), atol=ATOL, rtol=0)
    idx = torch.tensor([0, 3, 7])
    torch.testing.assert_close(R.layer(1).heads(slice(1, 2)).tokens(idx).dense(), dense[1:2, :, 1:2][:, :, :, idx])


def test_mismatched_subset_raises_clear_errors():
    pe, pos, R, ref = setup("liere")
    with pytest.raises(ValueError, match="tokens"):
        liere.apply_rotation(torch.randn(B, H, P + N - 1, D), R)
    with pytest.raises(ValueError, match="heads"):
        liere.apply_rotation(torch.randn(B, 3, P + N, D), R)
    with pytest.raises(ValueError, match="batch"):
        liere.apply_rotation(torch.randn(2, H, 4, D), R.tokens(torch.zeros(3, 4, dtype=torch.long)))
    with pytest.raises(TypeError, match="Rotation"):
        liere.apply_rotation(torch.randn(B, H, P + N, D), ref)


@given(st.lists(st.integers(0, P + N - 1), min_size=1, max_size=P + N), st.sampled_from(sorted(ROTARY)))
def test_any_token_subset_equals_selecting_the_full_result(tokens, name):
    torch.manual_seed(len(tokens))
    pe = build(name, num_prefix_tokens=P)
    R = pe.rotation(torch.randn(N, 2))
    x = torch.randn(2, H, P + N, D)
    idx = torch.tensor(tokens)
    got = liere.apply_rotation(x[:, :, idx], R.tokens(idx))
    torch.testing.assert_close(got, liere.apply_rotation(x, R)[:, :, idx], atol=1e-6, rtol=0)

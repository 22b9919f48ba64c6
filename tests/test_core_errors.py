"""Hostile input: each error names the argument and what was expected."""

import pytest
import torch

import liere
from oracle import make


def test_unknown_method_lists_known_ones():
    with pytest.raises(ValueError, match=r"name: unknown position encoding 'lire'.*liere, liere_dense, comrope_ap.*visionllama"):
        liere.build("lire", pos_dims=2, head_dim=8, num_heads=1)
    with pytest.raises(TypeError, match="name: expected a method name"):
        liere.build(3, pos_dims=2, head_dim=8, num_heads=1)


def test_aliases_resolve():
    pe = liere.build("rope_vit", pos_dims=2, head_dim=8, num_heads=1)
    assert pe.name == "rope_axial"
    assert liere.build("RoPE-Mixed", pos_dims=2, head_dim=8, num_heads=1).name == "rope_mixed"


@pytest.mark.parametrize("block", [1, 0, 17])
def test_block_size_out_of_range(block):
    with pytest.raises(ValueError, match=r"block_size: expected .*head_dim=16"):
        liere.build("liere", pos_dims=2, head_dim=16, num_heads=1, block_size=block)


def test_fixed_block_methods_reject_other_sizes():
    with pytest.raises(ValueError, match="block_size: 'spherical' uses 3x3 blocks"):
        liere.build("spherical", pos_dims=2, head_dim=16, num_heads=1, block_size=4)
    with pytest.raises(ValueError, match="block_size: .* uses 2x2 blocks"):
        liere.build("rope_axial", pos_dims=2, head_dim=16, num_heads=1, block_size=4)


def test_rope_needs_one_dimension():
    with pytest.raises(ValueError, match="pos_dims: 'rope' is 1-D RoPE"):
        liere.build("rope", pos_dims=2, head_dim=16, num_heads=1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_integers(bad):
    with pytest.raises(ValueError, match="num_heads: expected an integer"):
        liere.build("liere", pos_dims=2, head_dim=8, num_heads=bad, block_size=4)


def test_positions_wrong_last_dimension():
    pe = make("liere")
    with pytest.raises(ValueError, match=r"positions: expected last dimension pos_dims=2, got shape \(4, 3\)"):
        pe.rotation(torch.zeros(4, 3))


def test_positions_wrong_rank_and_type():
    pe = make("liere")
    with pytest.raises(ValueError, match=r"positions: expected shape \(N, 2\) or \(B, N, 2\)"):
        pe.rotation(torch.zeros(4))
    with pytest.raises(TypeError, match="positions: expected a torch.Tensor"):
        pe.rotation([[0.0, 0.0]])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_positions(value):
    pe = make("rope_axial")
    pos = torch.zeros(4, 2)
    pos[2, 1] = value
    with pytest.raises(ValueError, match="positions: contains NaN or inf"):
        pe.rotation(pos)


def test_token_count_mismatch():
    pe = make("liere", num_prefix_tokens=1)
    q = torch.randn(1, 2, 4, 16)
    with pytest.raises(ValueError, match=r"q: has N=4 tokens .* rotation covers 5 tokens"):
        pe(q, q, torch.zeros(4, 2))


def test_q_and_k_shapes_differ():
    pe = make("liere")
    with pytest.raises(ValueError, match=r"q and k must have the same shape"):
        pe(torch.randn(1, 2, 4, 16), torch.randn(1, 2, 5, 16), torch.zeros(4, 2))


def test_layout_mismatch_is_reported():
    pe = make("liere", num_heads=2)  # expects (B, H=2, N, D)
    q = torch.randn(1, 4, 2, 16)  # (B, N, H, D) passed without layout="bnhd"
    with pytest.raises(ValueError, match=r"q: has N=2 tokens .*layout='bhnd'.*check the positions, num_prefix_tokens and the layout"):
        pe(q, q, torch.zeros(4, 2))
    q = torch.randn(1, 3, 3, 16)
    with pytest.raises(ValueError, match=r"q: has H=3 heads on axis 1 \(layout='bhnd'\).*check num_heads and the layout"):
        pe(q, q, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="layout: expected one of"):
        make("liere", layout="bhdn")


def test_head_dim_mismatch_and_rank():
    pe = make("rope_axial")
    with pytest.raises(ValueError, match="q: last dimension is 8 but the rotation is for head_dim=16"):
        pe(torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"q: expected a 4-D tensor \(B, H, N, D\)"):
        pe(torch.randn(2, 4, 16), torch.randn(2, 4, 16), torch.zeros(4, 2))


def test_batched_positions_batch_mismatch():
    pe = make("liere")
    with pytest.raises(ValueError, match="q: batch is 2 but the per-sample positions have batch 3"):
        pe(torch.randn(2, 2, 4, 16), torch.randn(2, 2, 4, 16), torch.zeros(3, 4, 2))


def test_layer_out_of_range():
    pe = make("liere", num_layers=2)
    q = torch.randn(1, 2, 4, 16)
    with pytest.raises(ValueError, match=r"layer: expected an integer in \[0, num_layers=2\), got 2"):
        pe(q, q, torch.zeros(4, 2), layer=2)
    with pytest.raises(ValueError, match="layer: the rotation holds 2 layers; pass layer=i"):
        liere.apply_rotation(q, pe.rotation(torch.zeros(4, 2)))


def test_prefix_position_shape():
    with pytest.raises(ValueError, match="prefix_position: expected shape"):
        make("liere", num_prefix_tokens=1, prefix_position=[0.0, 0.0, 0.0])


def test_absolute_needs_grid_shape_and_checks_tokens():
    with pytest.raises(ValueError, match="grid_shape: 'absolute' needs the patch grid"):
        liere.build("absolute", pos_dims=2, head_dim=8, num_heads=2)
    pe = liere.build("absolute", pos_dims=2, head_dim=8, num_heads=2, grid_shape=(2, 2))
    with pytest.raises(ValueError, match=r"tokens: expected 0 prefix \+ 4 patch tokens"):
        pe(torch.randn(1, 5, 16))


def test_visionllama_is_the_liere_code_baseline():
    """LieRE's VisionLlama: m = floor(D/2/d) pairs per axis at exp(-4j/(m-1)), leftover pairs frozen."""
    pe = liere.build("visionllama", pos_dims=3, head_dim=16, num_heads=1)  # 8 pairs, 2 per axis, 2 left over
    f = pe.frequencies()[0, :, 0]  # (d, M)
    expected = torch.zeros(3, 8)
    for axis in range(3):
        expected[axis, 2 * axis] = 1.0
        expected[axis, 2 * axis + 1] = float(torch.exp(torch.tensor(-4.0)))
    torch.testing.assert_close(f, expected)
    assert pe.default_convention == "liere"


def test_rope_mixed_draws_rotations_only():
    """RoPE-ViT turns the second axis' direction by +90 degrees from the first in every head."""
    torch.manual_seed(0)
    pe = liere.build("rope_mixed", pos_dims=2, head_dim=8, num_heads=64)
    f = pe.frequencies()[0]  # (2, H, M): pair 0 belongs to axis group 0, pair 2 to group 1 (2 pairs each)
    u, v = f[:, :, 0], f[:, :, 2] / f[:, :, 2].norm(dim=0)
    cross = u[0] * v[1] - u[1] * v[0]  # sin of the angle from u to v
    assert torch.all(cross > 0.999)

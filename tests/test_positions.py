import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import liere
from liere.positions import grid, with_prefix


def test_liere_convention_is_linspace_to_n_over_n_train():
    torch.testing.assert_close(grid(4, "liere")[:, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))
    g = grid((8,), "liere", train_shape=(4,))[:, 0]
    torch.testing.assert_close(g, torch.linspace(0, 2.0, 8))


def test_centers_and_index():
    torch.testing.assert_close(grid(4, "centers")[:, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    torch.testing.assert_close(grid(3, "index")[:, 0], torch.tensor([0.0, 1.0, 2.0]))


def test_row_major_order_matches_patch_flattening():
    g = grid((2, 3), "index")
    img = torch.arange(6).reshape(1, 1, 2, 3).float()  # value = row * 3 + col, flattened like a conv patch grid
    flat = img.flatten(2)[0, 0]
    torch.testing.assert_close(g[:, 0] * 3 + g[:, 1], flat)


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), conv=st.sampled_from(liere.positions.CONVENTIONS))
def test_grid_shape_and_range(shape, conv):
    g = grid(shape, conv)
    assert g.shape == (int(torch.tensor(shape).prod()), len(shape))
    assert g.min() >= 0
    if conv == "centers":
        assert g.max() < 1


def test_bad_convention_and_train_shape():
    with pytest.raises(ValueError, match="convention: expected one of"):
        grid((2, 2), "pixels")
    with pytest.raises(ValueError, match="train_shape: expected 2 sizes"):
        grid((2, 2), "liere", train_shape=(2,))


def test_with_prefix():
    p = with_prefix(grid((2, 2)), 2)
    assert p.shape == (6, 2) and torch.all(p[:2] == 0)
    pb = with_prefix(torch.ones(3, 4, 2), 1, value=torch.tensor([5.0, 6.0]))
    assert pb.shape == (3, 5, 2) and torch.all(pb[:, 0] == torch.tensor([5.0, 6.0]))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300))
def test_liere_grid_coordinates_double_exactly(n):
    """p_2i = 2 p_i bit for bit (rotations at multiples are products, liere.ops.multiples), each coordinate
    within one float32 ulp of i / (n - 1)."""
    import numpy as np

    p = liere.positions.axis_coordinates(n, "liere").numpy()
    assert p.dtype == np.float32
    assert all(p[2 * i] == 2 * p[i] for i in range((n + 1) // 2) if 2 * i < n)
    exact = np.arange(n, dtype=np.float64) / (n - 1)
    assert np.all(np.abs(p.astype(np.float64) - exact) <= np.spacing(np.float32(1.0)) * np.maximum(exact, 1e-30))

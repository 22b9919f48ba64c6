"""absolute (DeiT-III) and none."""

import math

import pytest
import torch
import torch.nn.functional as F

import liere


def test_absolute_adds_table_to_patch_tokens_only():
    pe = liere.build("absolute", pos_dims=2, head_dim=4, num_heads=2, grid_shape=(3, 3), num_prefix_tokens=1)
    assert pe.additive and not pe.rotary and pe.generators() is None
    x = torch.randn(2, 10, 8)
    y = pe(x)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y[:, 1:] - x[:, 1:], pe.table.flatten(2).transpose(1, 2).expand(2, 9, 8))


def test_learned_table_is_resized_by_bicubic_interpolation():
    pe = liere.build("absolute", pos_dims=2, head_dim=4, num_heads=2, grid_shape=(4, 4))
    table = pe.embedding((6, 6))
    ref = F.interpolate(pe.table.detach(), size=(6, 6), mode="bicubic", align_corners=False).flatten(2)[0].T
    torch.testing.assert_close(table.detach(), ref)
    y = pe(torch.zeros(1, 36, 8), grid_shape=(6, 6))
    assert y.shape == (1, 36, 8)


def test_sincos_table_values():
    pe = liere.build("absolute", pos_dims=2, head_dim=4, num_heads=2, grid_shape=(2, 3), kind="sincos")
    table = pe.embedding()  # (6, 8): per axis 2 frequencies, sin then cos
    row, col = 1, 2
    token = row * 3 + col
    expected = [math.sin(row), math.sin(row * 0.01), math.cos(row), math.cos(row * 0.01),
                math.sin(col), math.sin(col * 0.01), math.cos(col), math.cos(col * 0.01)]
    torch.testing.assert_close(table[token], torch.tensor(expected), atol=1e-6, rtol=0)
    assert not any(True for _ in pe.parameters())


def test_absolute_3d_uses_trilinear():
    pe = liere.build("absolute", pos_dims=3, head_dim=4, num_heads=1, grid_shape=(2, 2, 2))
    ref = F.interpolate(pe.table.detach(), size=(3, 4, 4), mode="trilinear", align_corners=False).flatten(2)[0].T
    torch.testing.assert_close(pe.embedding((3, 4, 4)).detach(), ref)


def test_none_is_identity():
    pe = liere.build("none", pos_dims=2, head_dim=8, num_heads=2)
    q, k = torch.randn(2, 1, 2, 4, 8).unbind(0)
    q2, k2 = pe(q, k, torch.zeros(4, 2))
    assert q2 is q and k2 is k
    assert pe.rotation(torch.zeros(4, 2)) is None and pe.generators() is None and not pe.rotary


def test_absolute_bad_kind():
    with pytest.raises(ValueError, match="kind: expected 'learned' or 'sincos'"):
        liere.build("absolute", pos_dims=2, head_dim=4, num_heads=1, grid_shape=(2, 2), kind="rope")

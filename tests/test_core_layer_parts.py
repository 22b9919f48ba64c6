"""Rotations made one layer at a time (``Rotation.from_layers``), as the CPU does for large per-layer batches.

The threshold is lowered so that small encodings take that path; every check is against the float64 oracle
(``tests/oracle.py``) or against float64 autograd through ``torch.linalg.matrix_exp``, never against the
batched path itself.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import liere
from liere.encodings import base
from liere.rotation import Rotation

from oracle import oracle_rotation, random_positions

LAYERS = 3


@pytest.fixture
def per_layer(monkeypatch):
    monkeypatch.setattr(base, "_PER_LAYER_BYTES", 0)


def _encoding(block_size: int = 8, **kwargs):
    torch.manual_seed(0)
    return liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, num_layers=LAYERS, block_size=block_size,
                       **kwargs).train()


@pytest.mark.parametrize("block_size", [8, 16])
def test_each_layer_matches_the_oracle(per_layer, block_size):
    pe = _encoding(block_size)
    pos = random_positions(5, 2, scale=2.0, generator=torch.Generator().manual_seed(1))
    rotation = pe.rotation(pos)
    assert rotation.parts is not None and rotation.num_layers == LAYERS
    dense = rotation.dense()  # (L, 1, H, N, D, D)
    for layer in range(LAYERS):
        want = oracle_rotation(pe, pos, layer)  # (H, N, D, D)
        torch.testing.assert_close(dense[layer, 0].double(), want, atol=2e-5, rtol=0)
        torch.testing.assert_close(rotation.layer(layer).dense()[0, 0].double(), want, atol=2e-5, rtol=0)


def test_generator_gradients_match_float64_autograd(per_layer):
    pe = _encoding(8, init_scale=0.3)
    pos = random_positions(4, 2, generator=torch.Generator().manual_seed(2))
    q, k = torch.randn(2, 2, 4, 16, dtype=torch.float64), torch.randn(2, 2, 4, 16, dtype=torch.float64)
    weights = torch.randn(LAYERS, dtype=torch.float64)

    rotation = pe.rotation(pos)
    assert rotation.parts is not None
    loss = sum(w * sum(t.double().square().mul(q).sum() for t in pe(q.float(), k.float(), rotation.layer(i)))
               for i, w in enumerate(weights))
    (got,) = torch.autograd.grad(loss, pe.upper)

    upper = pe.upper.detach().double().requires_grad_()
    rows, cols = torch.triu_indices(8, 8, 1)
    ref = 0.0
    for i, w in enumerate(weights):
        tri = upper.new_zeros(*upper.shape[1:-1], 8, 8)
        tri[..., rows, cols] = upper[i]
        gens = tri - tri.mT  # (d, H, M, 8, 8)
        # the same generators as the encoding's own dense ones (checks the entry order, not the exponential)
        dense = torch.block_diag(*gens[0, 0]) if gens.shape[2] > 1 else gens[0, 0, 0]
        torch.testing.assert_close(dense, pe.generators(i)[0, 0].double())
        a = torch.einsum("nd,dhmij->hnmij", pos.double(), gens).contiguous()
        r = torch.linalg.matrix_exp(a)  # (H, N, M, 8, 8)
        outs = []
        for x in (q, k):
            xb = x.unflatten(-1, (2, 8))  # (B, H, N, M, 8)
            outs.append(torch.einsum("hnmij,bhnmj->bhnmi", r, xb).flatten(-2))
        ref = ref + w * sum(t.square().mul(q).sum() for t in outs)
    (want,) = torch.autograd.grad(ref, upper)
    torch.testing.assert_close(got.double(), want, atol=1e-4 * want.abs().max().item(), rtol=1e-4)


def test_taken_only_where_the_batch_is_large():
    pe = _encoding(8)
    pos = random_positions(5, 2)
    assert pe.rotation(pos).parts is None  # a few kB: one batched exponential
    assert _encoding(8, share_layers=True).rotation(pos).parts is None


def test_slicing_moving_and_stacking_keep_the_rotation(per_layer):
    pe = _encoding(8)
    pos = random_positions(6, 2)
    rotation = pe.rotation(pos)
    full = rotation.dense()
    stacked = rotation.stacked()
    assert stacked.parts is None and stacked.blocks.shape[0] == LAYERS
    torch.testing.assert_close(stacked.dense(), full)
    torch.testing.assert_close(rotation.tokens(torch.tensor([0, 3])).dense(), full[:, :, :, [0, 3]])
    torch.testing.assert_close(rotation.heads(1).dense(), full[:, :, 1:2])
    torch.testing.assert_close(rotation.to(torch.float64).dense(), full.double())
    torch.testing.assert_close(rotation._index(0, slice(1, 3)).dense(), full[1:3])
    with pytest.raises(IndexError, match="layer 3 out of range"):
        rotation.layer(3)
    assert rotation.layer(1).orthogonal and not dataclasses.replace(rotation, orthogonal=False).layer(1).orthogonal


def test_prefix_tokens_get_the_identity(per_layer):
    pe = _encoding(8, num_prefix_tokens=1)
    pos = random_positions(4, 2)
    dense = pe.rotation(pos).dense()  # (L, 1, H, 1 + N, D, D)
    eye = torch.eye(16).expand(LAYERS, 1, 2, 16, 16)
    torch.testing.assert_close(dense[:, :, :, 0], eye)


def test_from_layers_rejects_bad_parts():
    one = Rotation(8, blocks=torch.eye(8).expand(1, 1, 1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="non-empty sequence"):
        Rotation.from_layers([])
    with pytest.raises(ValueError, match="one layer"):
        Rotation.from_layers([Rotation(8, blocks=torch.eye(8).expand(2, 1, 1, 2, 1, 8, 8)), one])
    with pytest.raises(ValueError, match="differ"):
        Rotation.from_layers([one, Rotation(8, blocks=torch.eye(8).expand(1, 1, 1, 3, 1, 8, 8))])
    with pytest.raises(ValueError, match="parts .* or tensors"):
        Rotation(8, blocks=one.blocks, parts=(one, one))

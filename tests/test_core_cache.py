"""Eval-mode rotation cache: keyed by positions, device and dtype; invalidated by parameter changes."""

import torch

from oracle import make


def test_cache_hits_in_eval_and_not_in_train():
    pe = make("liere")
    pos = torch.rand(6, 2)
    pe.train()
    with torch.no_grad():
        assert pe.rotation(pos) is not pe.rotation(pos)
    pe.eval()
    with torch.no_grad():
        r1 = pe.rotation(pos)
        assert pe.rotation(pos.clone()) is r1  # same values, another tensor
        assert pe.rotation(pos + 1e-3) is not r1


def test_cache_invalidated_when_parameters_change():
    pe = make("comrope_ld").eval()
    pos = torch.rand(6, 2)
    with torch.no_grad():
        r1 = pe.rotation(pos)
        pe.scales.mul_(2.0)
        r2 = pe.rotation(pos)
    assert r2 is not r1
    assert (r2.blocks - r1.blocks).abs().max() > 1e-3
    # load_state_dict copies in place: also a new version.
    other = make("comrope_ld")
    with torch.no_grad():
        pe.load_state_dict(other.state_dict())
        r3 = pe.rotation(pos)
        torch.testing.assert_close(r3.blocks, other.eval().rotation(pos).blocks)


def test_cache_invalidated_by_optimizer_step():
    pe = make("rope_mixed")
    pos = torch.rand(6, 2)
    opt = torch.optim.SGD(pe.parameters(), lr=0.1)
    pe.eval()
    with torch.no_grad():
        r1 = pe.rotation(pos)
    pe.train()
    q = torch.randn(1, 2, 6, 16)
    (pe(q, q, pos)[0] * torch.randn(1, 2, 6, 16)).sum().backward()  # |Rq|^2 alone would not depend on R
    opt.step()
    pe.eval()
    with torch.no_grad():
        r2 = pe.rotation(pos)
    assert (r2.cos - r1.cos).abs().max() > 1e-6


def test_cache_keyed_by_dtype():
    pe = make("rope_axial").eval()
    pos = torch.rand(6, 2)
    with torch.no_grad():
        r32 = pe.rotation(pos)
        pe.double()
        r64 = pe.rotation(pos)
    assert r32.dtype == torch.float32 and r64.dtype == torch.float64


def test_no_cache_when_grad_is_needed():
    pe = make("liere").eval()
    pos = torch.rand(6, 2)
    r1 = pe.rotation(pos)
    assert r1.blocks.requires_grad
    assert pe.rotation(pos) is not r1

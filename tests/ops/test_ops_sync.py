"""A training forward does not make the host wait for the device (issue 10).

Needs CUDA (``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call into an
error); skipped elsewhere. LieRE with b >= 5 still reads its squaring counts on the host once per
exponential call (see liere.ops.expm) and is not listed.
"""

import pytest
import torch

import liere

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("name,block_size", [("rope_mixed", None), ("rope_axial", None), ("comrope_ld", 4),
                                             ("comrope_ap", 4), ("spherical", 3), ("liere", 2), ("liere", 4)])
def test_training_forward_does_not_synchronise(name, block_size):
    pe = liere.build(name, pos_dims=2, head_dim=64, num_heads=2, block_size=block_size).cuda().train()
    pos = liere.positions.grid((4, 4), pe.default_convention, device="cuda")
    q = torch.randn(2, 2, 16, 64, device="cuda", requires_grad=True)
    pe(q, q, pos)  # warm-up: lazy initialisations may synchronise once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        q2, k2 = pe(q, q, pos)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert q2.shape == q.shape


@cuda
def test_non_finite_positions_still_fail_on_cuda():
    pe = liere.build("rope_mixed", pos_dims=2, head_dim=16, num_heads=2).cuda()
    pos = torch.tensor([[0.0, float("nan")]], device="cuda")
    q = torch.randn(1, 2, 1, 16, device="cuda")
    with pytest.raises(RuntimeError):
        pe(q, q, pos)
        torch.cuda.synchronize()

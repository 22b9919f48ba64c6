"""A training forward does not make the host wait for the device (issue 10).

The CUDA tests (``torch.cuda.set_sync_debug_mode("error")`` turns every synchronising call into an
error) are skipped elsewhere. LieRE with b >= 5 reads its squaring counts back from the device
asynchronously (liere.ops.expm._CountReadback); the CPU tests below run that protocol on the CPU
(``_READBACK_ON_CPU``), check that the hot path then makes no host read of device data, and that its
results match a float64 oracle, including after the generators jump.
"""

import warnings

import pytest
import torch

import liere
from liere.ops import expm as expm_module

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("name,block_size", [("rope_mixed", None), ("rope_axial", None), ("comrope_ld", 4),
                                             ("comrope_ap", 4), ("spherical", 3), ("liere", 2), ("liere", 4),
                                             ("liere", 8), ("liere", 64)])
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


@pytest.fixture
def readback_on_cpu(monkeypatch):
    monkeypatch.setattr(expm_module, "_READBACK_ON_CPU", True)
    monkeypatch.setattr(expm_module, "_SITES", {})


def _forbid_host_reads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("host read of a tensor on the hot path")

    monkeypatch.setattr(torch.Tensor, "tolist", refuse)
    monkeypatch.setattr(torch.Tensor, "item", refuse)


def _oracle(pe, pos):
    gens = pe.generator_blocks().double()  # (L, d, Hp, M, b, b)
    a = torch.einsum("nd,ldhmij->lhnmij", pos.double(), gens)
    return torch.linalg.matrix_exp(a.contiguous())


@pytest.mark.parametrize("block_size", [8, 16])
def test_liere_training_step_reads_no_squaring_count_after_warm_up(readback_on_cpu, monkeypatch, block_size):
    torch.manual_seed(0)
    pe = liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, block_size=block_size).train()
    pos = liere.positions.grid((4, 4), pe.default_convention)
    q = torch.randn(2, 2, 16, 16, requires_grad=True)
    q2, k2 = pe(q, q, pos)  # warm-up: the first call of a site reads its count once
    (q2.sum() + k2.sum()).backward()
    _forbid_host_reads(monkeypatch)
    opt = torch.optim.SGD(pe.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        q2, k2 = pe(q, q, pos)
        (q2.square().sum() + k2.sum()).backward()
        opt.step()
    monkeypatch.undo()
    blocks = pe.rotation(pos).blocks[:, 0]  # (L, Hp, N, M, b, b)
    torch.testing.assert_close(blocks.double(), _oracle(pe, pos), atol=2e-5, rtol=0)


def test_readback_count_follows_the_generators_and_warns_when_a_call_ran_too_few(readback_on_cpu):
    torch.manual_seed(0)
    pe = liere.build("liere", pos_dims=2, head_dim=16, num_heads=1, block_size=8).eval()
    pos = liere.positions.grid((4, 4), pe.default_convention)
    pe.cache = False
    with torch.no_grad():
        pe.rotation(pos)
        pe.rotation(pos)  # the read-back from the call before has landed: count = needed + margin
        pe.upper.mul_(64.0)  # |A| grows 64x: 6 more squarings than the count the site holds
        pe.rotation(pos)  # runs too few (truncated); its read-back is pending
        with pytest.warns(RuntimeWarning, match="squarings where its data needed"):
            pe.rotation(pos)  # polls: warns and raises the count for the calls after it
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            blocks = pe.rotation(pos).blocks[:, 0]
    torch.testing.assert_close(blocks.double(), _oracle(pe, pos), atol=2e-5, rtol=0)

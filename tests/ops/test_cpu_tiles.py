"""The CPU kernels' register-tile products (b = 32, 48, 64: dense LieRE) against float64 references.

The block rotation at tile widths against test_cpu_kernel's dense float64 oracle (block-diagonal matrix,
einsum; no shared code with the kernel); the kernel's exponential at these sizes against float64
``torch.linalg.matrix_exp`` and autograd through it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.ops import apply, apply_rotation_qk, cpu_kernel, expm
from liere.rotation import Rotation

from test_cpu_kernel import _case, _oracle, _ours

needs_kernel = pytest.mark.skipif(not cpu_kernel.available(), reason=f"CPU kernel: {cpu_kernel.status()}")


@needs_kernel
@pytest.mark.parametrize("b,blocks,extra", [(64, 1, 0), (32, 2, 3), (48, 1, 5), (32, 1, 0)])
@pytest.mark.parametrize("per_sample,per_head", [(False, True), (False, False), (True, True)])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_tile_widths_match_float64_oracle(b, blocks, extra, per_sample, per_head, layout, orthogonal):
    """q and k as views of a qkv projection, every broadcast of the rotation, leftover channels, both layouts:
    outputs and gradients to qkv and to the generators in float32 against the float64 dense oracle."""
    B, H, N = 7, 3, 11  # 7 rows per rotation row: one tile of 6 and a remainder
    qkv, u, g = _case(B, H, N, b * blocks + extra, b, B if per_sample else 1, H if per_head else 1, layout, seed=b)
    (oq, ok), (gqkv, gu) = _ours(qkv, u, g, layout, orthogonal=orthogonal)
    (rq, rk), (rqkv, ru) = _oracle(qkv, u, g, layout)
    for got, want in ((oq, rq), (ok, rk), (gqkv, rqkv), (gu, ru)):
        scale = want.abs().amax().item() + 1.0
        assert (got.double() - want).abs().max().item() <= 2e-6 * scale * b


@needs_kernel
def test_dense_blocks_run_on_the_kernel_not_the_packed_bmm(monkeypatch):
    def packed(*args):
        raise AssertionError("the packed bmm ran")

    monkeypatch.setattr(apply._PackedBlockRotate, "apply", packed)
    qkv, u, g = _case(4, 2, 5, 64, 64, 1, 2, "bhnd", seed=1)
    _ours(qkv, u, g, "bhnd")


def _shared_rotation(seed: int) -> tuple[Rotation, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(1, 1, 2, 5, 1, 64, 64, generator=gen)
    blocks = torch.linalg.matrix_exp(u - u.mT)
    return Rotation(64, blocks=blocks), torch.randn(3, 5, 3, 2, 64, generator=gen)


@needs_kernel
def test_a_rotation_applied_again_keeps_its_transpose_and_notices_in_place_changes():
    """A rotation shared by the layers keeps the kernel's R^T from its second use on; changing its blocks in
    place afterwards must not leave the old R^T in use."""
    rotation, qkv = _shared_rotation(0)
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0)

    def oracle(x, blocks):
        return torch.einsum("hnij,bhnj->bhni", blocks[0, 0, :, :, 0].double(), x.double())

    first = apply_rotation_qk(q, k, rotation)
    assert rotation.__dict__["_transposed"][2] is None  # used once: nothing kept
    second = apply_rotation_qk(q, k, rotation)
    assert rotation.__dict__["_transposed"][2] is not None
    for got in (first, second):
        assert (got[0].double() - oracle(q, rotation.blocks)).abs().max() < 1e-5
    with torch.no_grad():
        rotation.blocks.copy_(_shared_rotation(1)[0].blocks)
    third = apply_rotation_qk(q, k, rotation)
    fourth = apply_rotation_qk(q, k, rotation)
    for got in (third, fourth):
        assert (got[0].double() - oracle(q, rotation.blocks)).abs().max() < 1e-5
        assert (got[1].double() - oracle(k, rotation.blocks)).abs().max() < 1e-5


@needs_kernel
def test_a_shared_rotation_gets_the_summed_gradient_of_its_layers():
    """Twelve layers applying one rotation: its gradient is the sum over the layers (float64 oracle)."""
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(1, 1, 2, 5, 1, 64, 64, generator=gen, dtype=torch.float64, requires_grad=True)
    qkvs = [torch.randn(3, 5, 3, 2, 64, generator=gen, dtype=torch.float64) for _ in range(12)]
    grads = [torch.randn(2, 3, 2, 5, 64, generator=gen, dtype=torch.float64) for _ in range(12)]

    def total(blocks, dtype):
        rotation = Rotation(64, blocks=blocks, orthogonal=True)
        loss = 0.0
        for qkv, g in zip(qkvs, grads):
            q, k, _ = qkv.to(dtype).permute(2, 0, 3, 1, 4).unbind(0)
            oq, ok = apply_rotation_qk(q, k, rotation)
            loss = loss + (oq * g[0].to(dtype)).sum() + (ok * g[1].to(dtype)).sum()
        return loss

    blocks64 = torch.linalg.matrix_exp(u - u.mT)
    (want,) = torch.autograd.grad(total(blocks64, torch.float64), u)
    u32 = u.detach().float().requires_grad_()
    (got,) = torch.autograd.grad(total(torch.linalg.matrix_exp(u32 - u32.mT), torch.float32), u32)
    assert (got.double() - want).abs().max().item() <= 1e-4 * (want.abs().max().item() + 1.0)


def test_only_layer_refuses_a_rotation_of_several_layers():
    with pytest.raises(ValueError, match="one-layer"):
        apply._only_layer(torch.zeros(2, 1, 1, 3, 1, 4, 4))


@needs_kernel
@pytest.mark.parametrize("size", [32, 48, 64])
def test_expm_kernel_at_tile_sizes_matches_float64_matrix_exp(size, monkeypatch):
    """exp and its gradient in float32 by the kernel, one matrix at a time on register tiles, from |A| ~ 0.01 to
    ~3000 radians (past 8 squarings a matrix runs in float64, tiles of doubles), against float64 matrix_exp and
    autograd through it."""
    calls = []
    real = cpu_kernel.skew_expm
    monkeypatch.setattr(cpu_kernel, "skew_expm", lambda a: calls.append(1) or real(a))
    gen = torch.Generator().manual_seed(size)
    u = torch.randn(8, size, size, generator=gen, dtype=torch.float64) * torch.logspace(-3, 1.7, 8)[:, None, None]
    a = (u - u.mT).float()
    g = torch.randn(8, size, size, generator=gen)
    a32 = a.clone().requires_grad_()
    out = expm.skew_expm(a32)
    (grad,) = torch.autograd.grad(out, a32, g)
    assert calls, "the kernel's exponential did not run"
    a64 = a.double().requires_grad_()
    ref = torch.linalg.matrix_exp(a64)
    (ref_grad,) = torch.autograd.grad(ref, a64, g.double())
    for i in range(8):
        norm = a[i].double().abs().sum(-2).amax().item() + 1.0
        assert (out[i].double() - ref[i]).abs().max().item() <= 2e-5 * norm
        scale = ref_grad[i].abs().max().item() + 1.0
        assert (grad[i].double() - ref_grad[i]).abs().max().item() <= 2e-5 * norm * scale


@needs_kernel
def test_kernels_are_built_with_openmp():
    """torch's at::parallel_for is an OpenMP pragma in its header: a build without -fopenmp runs every kernel on
    one thread (it did, until 2026-12-03). The library must call into the OpenMP runtime."""
    path = Path(cpu_kernel.status().split("built at ", 1)[1])
    assert b"GOMP_parallel" in path.read_bytes()

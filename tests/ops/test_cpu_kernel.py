"""The CPU block-rotation kernel (liere.ops.cpu_kernel) against a float64 dense oracle.

The oracle is test_ops_apply's block-diagonal head_dim x head_dim matrix, built
from the raw blocks with padding and einsum: it shares no code with the kernel
or with the packed bmm it replaces. Every float32 block rotation on the CPU now
runs through the kernel, so test_ops_apply and test_core_oracle cover it too;
this file adds gradients in float32, broadcast shapes drawn by hypothesis, and
what happens when the kernel cannot be built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.ops import apply_rotation_qk, cpu_kernel
from liere.rotation import Rotation

from test_ops_apply import block_diag_differentiable, oracle_differentiable

needs_kernel = pytest.mark.skipif(not cpu_kernel.available(), reason=f"CPU kernel: {cpu_kernel.status()}")


def _case(B, H, N, D, b, bp, hp, layout, seed, dtype=torch.float64):
    """q and k as views of one qkv projection (as attention makes them), blocks exp(u - u^T), in float64."""
    gen = torch.Generator().manual_seed(seed)
    qkv = torch.randn(B, N, 3, H, D, dtype=dtype, generator=gen)
    u = torch.randn(1, bp, hp, N, D // b, b, b, dtype=dtype, generator=gen)
    g = torch.randn(2, B, H, N, D, dtype=dtype, generator=gen)
    if layout == "bnhd":
        g = g.transpose(2, 3)
    return qkv, u, g


def _split(qkv, layout):
    q, k, _ = qkv.permute(2, 0, 3, 1, 4).unbind(0) if layout == "bhnd" else qkv.unbind(2)
    return q, k


def _oracle(qkv, u, g, layout):
    """Outputs and gradients (to qkv and u) through the dense float64 matrix."""
    qkv, u = qkv.double().requires_grad_(), u.double().requires_grad_()
    dense = block_diag_differentiable(torch.linalg.matrix_exp(u - u.mT)[0], qkv.shape[-1])
    outs = [oracle_differentiable(x, dense, layout) for x in _split(qkv, layout)]
    grads = torch.autograd.grad(sum((o * gi.double()).sum() for o, gi in zip(outs, g)), (qkv, u))
    return [o.detach() for o in outs], grads


def _ours(qkv, u, g, layout, dtype=torch.float32, orthogonal=False):
    """The same through apply_rotation_qk in ``dtype`` (q, k) and float32 (the blocks); ``orthogonal`` lets the
    backward read the rotated outputs instead of the inputs."""
    qkv = qkv.to(dtype).requires_grad_()
    u = u.float().requires_grad_()
    rot = Rotation(qkv.shape[-1], blocks=torch.linalg.matrix_exp(u - u.mT), orthogonal=orthogonal)
    outs = apply_rotation_qk(*_split(qkv, layout), rot, layout=layout)
    grads = torch.autograd.grad(sum((o * gi.to(dtype)).sum() for o, gi in zip(outs, g)), (qkv, u))
    return outs, grads


@needs_kernel
def test_kernel_is_built_and_used_for_float32_blocks(monkeypatch):
    assert cpu_kernel.status().startswith("on, built at")
    calls = []
    real = cpu_kernel.rotate_blocks
    monkeypatch.setattr(cpu_kernel, "rotate_blocks", lambda *a: calls.append(1) or real(*a))
    qkv, u, g = _case(2, 2, 3, 8, 4, 1, 2, "bhnd", seed=0)
    _ours(qkv, u, g, "bhnd")
    assert calls == [1]
    with cpu_kernel.enabled(False):  # the packed bmm, which the kernel replaced
        _ours(qkv, u, g, "bhnd")
    assert calls == [1]


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    B=st.integers(1, 3), H=st.integers(1, 3), N=st.integers(1, 40),
    b=st.sampled_from([2, 3, 4, 5, 6, 8, 16, 32]), blocks=st.integers(1, 6), extra=st.integers(0, 3),
    per_sample=st.booleans(), per_head=st.booleans(), layout=st.sampled_from(["bhnd", "bnhd"]),
    orthogonal=st.booleans(), seed=st.integers(0, 2**16),
)
def test_kernel_matches_float64_oracle_forward_and_gradients(B, H, N, b, blocks, extra, per_sample, per_head,
                                                             layout, orthogonal, seed):
    """Rotated q and k, d/d(qkv) and d/d(generators) in float32, for every broadcast of the rotation over
    batch and heads, both layouts, leftover channels and block sizes with and without a vectorised path;
    N up to 40 spans several token tiles, and rotations shared by 4 or more rows take the banded form.
    With orthogonal blocks the backward reads the outputs (one pass over g); without, the inputs."""
    D = b * blocks + extra
    qkv, u, g = _case(B, H, N, D, b, B if per_sample else 1, H if per_head else 1, layout, seed)
    (oq, ok), (gqkv, gu) = _ours(qkv, u, g, layout, orthogonal=orthogonal)
    (rq, rk), (rqkv, ru) = _oracle(qkv, u, g, layout)
    # float32 products of a few terms: errors of a few ulps of the values' size
    for got, want in ((oq, rq), (ok, rk), (gqkv, rqkv), (gu, ru)):
        scale = want.abs().amax().item() + 1.0
        assert (got.double() - want).abs().max().item() <= 2e-6 * scale * max(b, 4)


@needs_kernel
@pytest.mark.parametrize("b", [2, 3, 5, 6])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
@pytest.mark.parametrize("orthogonal", [False, True])
def test_banded_form_matches_float64_oracle_at_vit_shapes(b, layout, orthogonal):
    """Blocks shared by the batch (images' positions), 64 channels with a leftover one for b = 3, 5, 6, 37
    tokens (two full tiles and a partial one): the banded kernels, against the dense float64 oracle."""
    qkv, u, g = _case(8, 3, 37, 64, b, 1, 3, layout, seed=b)
    (oq, ok), (gqkv, gu) = _ours(qkv, u, g, layout, orthogonal=orthogonal)
    (rq, rk), (rqkv, ru) = _oracle(qkv, u, g, layout)
    for got, want in ((oq, rq), (ok, rk), (gqkv, rqkv), (gu, ru)):
        scale = want.abs().amax().item() + 1.0
        assert (got.double() - want).abs().max().item() <= 2e-6 * scale * 8


@needs_kernel
@pytest.mark.parametrize("b", [4, 8])
def test_outputs_changed_in_place_send_the_backward_back_to_the_inputs(b):
    """With orthogonal blocks the backward recovers x from the saved output; a caller that scales the output in
    place afterwards (legal: the output is not a saved tensor) must still get the oracle's gradients."""
    qkv, u, g = _case(3, 2, 5, 16, b, 1, 2, "bhnd", seed=11)
    (rq, rk), (rqkv, ru) = _oracle(qkv, u, g, "bhnd")
    x = qkv.float().requires_grad_()
    uf = u.float().requires_grad_()
    q, k = apply_rotation_qk(*_split(x, "bhnd"), Rotation(16, blocks=torch.linalg.matrix_exp(uf - uf.mT),
                                                           orthogonal=True))
    q.mul_(2.0)
    k.mul_(2.0)
    gx, gu = torch.autograd.grad((q * g[0].float()).sum() + (k * g[1].float()).sum(), (x, uf))
    for got, want in ((gx, 2 * rqkv), (gu, 2 * ru)):
        assert (got.double() - want).abs().max().item() <= 1e-5 * (want.abs().amax().item() + 1.0)


@needs_kernel
@pytest.mark.parametrize("name,b", [("liere", 24), ("liere", 8), ("liere", 4), ("liere", 3), ("comrope_ld", 4),
                                    ("comrope_ap", 4), ("comrope_ld", 3), ("spherical", 3)])
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_encodings_float32_gradients_through_the_kernel_match_float64(name, b, layout):
    """Every block encoding marks its rotation orthogonal, so training runs the kernel's output-reading backward;
    its gradients (to q, k and the encoding's parameters) against the same model in float64, whose rotation
    runs as torch ops and keeps its inputs."""
    import copy

    import liere
    from liere.positions import grid

    torch.manual_seed(0)
    kwargs = {} if name == "spherical" else {"block_size": b}
    pe = liere.build(name, pos_dims=2, head_dim=24, num_heads=2, layout=layout, **kwargs)
    pe64 = copy.deepcopy(pe).double()
    pos = grid((3, 3), pe.default_convention)
    assert pe.rotation(pos).orthogonal
    qkv = torch.randn(5, 9, 3, 2, 24, dtype=torch.float64)
    g = torch.randn(2, *_split(qkv, layout)[0].shape, dtype=torch.float64)

    def grads(model, x, p):
        x = x.clone().requires_grad_()
        outs = model(*_split(x, layout), p)
        loss = sum((o * gi.to(o.dtype)).sum() for o, gi in zip(outs, g))
        return torch.autograd.grad(loss, [x, *model.parameters()])

    got, want = grads(pe, qkv.float(), pos), grads(pe64, qkv, pos.double())
    assert len(got) > 1
    for a, w in zip(got, want):
        assert (a.double() - w).abs().max().item() <= 2e-5 * (w.abs().amax().item() + 1.0)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_come_back_in_their_dtype(dtype):
    qkv, u, g = _case(2, 3, 4, 24, 8, 1, 3, "bhnd", seed=3)
    (oq, ok), (gqkv, _) = _ours(qkv, u, g, "bhnd", dtype=dtype)
    assert oq.dtype == ok.dtype == gqkv.dtype == dtype
    # The oracle on the rounded inputs: float32 math then one rounding, within a half-precision ulp.
    (rq, rk), _ = _oracle(qkv.to(dtype), u, g, "bhnd")
    for got, want in ((oq, rq), (ok, rk)):
        assert (got.double() - want).abs().max().item() <= 2 * torch.finfo(dtype).eps * want.abs().amax().item()


@needs_kernel
def test_kernel_and_packed_bmm_keep_the_same_tensors_for_the_backward():
    """Neither path may keep a float32 copy of q and k: in attention their storage is alive anyway."""
    qkv, u, _ = _case(8, 2, 9, 16, 8, 1, 2, "bhnd", seed=4, dtype=torch.float32)
    q, k = _split(qkv, "bhnd")
    blocks = torch.linalg.matrix_exp(u - u.mT).requires_grad_()
    allowed = {qkv.untyped_storage().data_ptr(), blocks.untyped_storage().data_ptr()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        apply_rotation_qk(q, k, Rotation(16, blocks=blocks))
    big = [t for t in saved if t.numel() >= q.numel()]
    assert big and all(t.untyped_storage().data_ptr() in allowed for t in big)


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=300)


_APPLY_AND_CHECK = """
    import warnings, torch
    from liere.ops import apply_rotation, cpu_kernel
    from liere.rotation import Rotation
    u = torch.randn(1, 1, 2, 3, 2, 4, 4, dtype=torch.float64)
    blocks = torch.linalg.matrix_exp(u - u.mT)
    x = torch.randn(2, 2, 3, 8, dtype=torch.float64)
    want = torch.einsum("hnmij,bhnmj->bhnmi", blocks[0, 0], x.unflatten(-1, (2, 4))).flatten(-2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = apply_rotation(x.float(), Rotation(8, blocks=blocks.float()))
        apply_rotation(x.float(), Rotation(8, blocks=blocks.float()))
    assert (got.double() - want).abs().max().item() < 1e-5
    print("STATUS", cpu_kernel.status())
    print("WARNINGS", len([w for w in caught if "the CPU kernels are unavailable" in str(w.message)]))
"""


def test_switched_off_by_environment_falls_back_to_the_packed_bmm(tmp_path):
    done = _run_python(_APPLY_AND_CHECK, LIERE_CPU_KERNEL="0", LIERE_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "STATUS off, turned off by LIERE_CPU_KERNEL" in done.stdout
    assert "WARNINGS 0" in done.stdout
    assert not any(tmp_path.rglob("*.so"))


def test_a_failing_compiler_warns_once_and_falls_back(tmp_path):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` command to stand in for a broken compiler")
    done = _run_python(_APPLY_AND_CHECK, CXX=false, LIERE_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "STATUS off, not built (false failed" in done.stdout
    assert "WARNINGS 1" in done.stdout
    # The failure is remembered: the next process does not try the same compiler again, and says how to retry.
    again = _run_python(_APPLY_AND_CHECK, CXX=false, LIERE_CACHE_DIR=str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "an earlier build failed; delete" in again.stdout and "WARNINGS 1" in again.stdout


@needs_kernel
def test_build_cache_is_keyed_by_the_cpu(monkeypatch):
    """A build for one instruction set must never be loaded on another (a shared home on a mixed cluster)."""
    here = cpu_kernel._library_path()
    monkeypatch.setattr(cpu_kernel, "_cpu_signature", lambda: "x86_64||flags: sse2")
    assert cpu_kernel._library_path() != here
    assert cpu_kernel._library_path().parent == here.parent


@needs_kernel
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_second_derivatives_match_float64_oracle(layout):
    """A gradient penalty (create_graph=True) differentiates the backward: the kernel's backward has no
    derivative of its own, so that case runs as torch ops; here against the dense float64 oracle."""
    qkv, u, g = _case(2, 2, 3, 11, 4, 1, 2, layout, seed=7)

    def penalty(qkv, u, rotate):
        q, k = _split(qkv, layout)
        outs = rotate(q, k, torch.linalg.matrix_exp(u - u.mT))
        loss = sum((o * gi.to(o.dtype)).sum() for o, gi in zip(outs, g))
        gq, gu = torch.autograd.grad(loss, (q, u), create_graph=True)
        # Not |gq|^2: R^T g has the norm of g whatever R is, so its derivative in u would be 0.
        return torch.autograd.grad((gq ** 3).sum() + (gu ** 2).sum(), (qkv, u))

    def ours(q, k, blocks):
        return apply_rotation_qk(q, k, Rotation(q.shape[-1], blocks=blocks), layout=layout)

    def oracle(q, k, blocks):
        dense = block_diag_differentiable(blocks[0], q.shape[-1])
        return [oracle_differentiable(x, dense, layout) for x in (q, k)]

    got = penalty(qkv.float().requires_grad_(), u.float().requires_grad_(), ours)
    want = penalty(qkv.requires_grad_(), u.requires_grad_(), oracle)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


@needs_kernel
def test_expm_kernel_runs_for_float32_blocks_and_keeps_only_its_input(monkeypatch):
    from liere.ops import skew_expm

    calls = []
    real = cpu_kernel.skew_expm
    monkeypatch.setattr(cpu_kernel, "skew_expm", lambda a: calls.append(a.shape) or real(a))
    u = torch.randn(6, 8, 8)
    a = (u - u.mT).requires_grad_()
    out = skew_expm(a)
    assert calls == [(6, 8, 8)]
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 1 and saved[0] is a  # the backward recomputes; nothing else is held
    skew_expm(a.double())  # float64 (tests, gradcheck) stays on the torch path
    assert calls == [(6, 8, 8)]


@needs_kernel
@pytest.mark.parametrize("size", [5, 8, 16])
def test_expm_second_derivative_matches_float64_matrix_exp(size):
    """A gradient penalty through the exponential (create_graph=True): neither the kernel's backward nor the
    torch path's hand-written one can be differentiated, so that case runs autograd through matrix_exp;
    both paths against float64 torch.linalg.matrix_exp."""
    from liere.ops import skew_expm

    gen = torch.Generator().manual_seed(size)
    u = torch.randn(3, size, size, dtype=torch.float64, generator=gen)
    g = torch.randn(3, size, size, dtype=torch.float64, generator=gen)

    def penalty(u, expm):
        (gu,) = torch.autograd.grad((expm(u - u.mT) * g.to(u.dtype)).sum(), u, create_graph=True)
        return torch.autograd.grad((gu ** 2).sum(), u)[0]

    want = penalty(u.clone().requires_grad_(), torch.linalg.matrix_exp)
    for on in (True, False):
        with cpu_kernel.enabled(on):
            got = penalty(u.float().requires_grad_(), skew_expm)
        torch.testing.assert_close(got.double(), want, atol=1e-3, rtol=1e-3)


def test_a_damaged_cached_build_is_rebuilt(tmp_path):
    """A cached library that does not load (damaged, or built against another torch in place) is built again."""
    if shutil.which(os.environ.get("CXX") or "c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler here")
    code = """
        from liere.ops import cpu_kernel
        path = cpu_kernel._library_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not a shared library")
        print("STATUS", cpu_kernel.status())
    """
    done = _run_python(code, LIERE_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "STATUS on, built at" in done.stdout
    assert [p.stat().st_size > 1000 for p in tmp_path.rglob("*.so")] == [True]

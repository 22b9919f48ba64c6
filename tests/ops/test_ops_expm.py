"""Exponentials of skew blocks (liere.ops.skew_expm) against float64 torch.linalg.matrix_exp.

The oracle is LAPACK-backed ``torch.linalg.matrix_exp`` in float64 on the same
(float32-rounded) input, so the comparison measures only our own error.
Gradients are checked with ``gradcheck`` through a skew parametrisation
A = U - U^T, because the closed forms are exact only on skew inputs.

Every test runs twice: with the CPU kernel (float32 blocks of 5 to 16, the
eager default) and without it (the torch path, which compiled graphs and
machines without a compiler run).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.ops import cpu_kernel, expm_taylor_ss, skew_expm

EPS32 = torch.finfo(torch.float32).eps
BLOCKS = [2, 3, 4, 5, 8, 16, 33, 64]
NORMS = [0.0, 1e-8, 1e-4, 0.1, 1.0, 10.0, 1e2, 1e3, 1e4]


@pytest.fixture(autouse=True, params=["kernel", "torch"])
def expm_path(request):
    if request.param == "kernel" and not cpu_kernel.available():
        pytest.skip(f"CPU kernel: {cpu_kernel.status()}")
    with cpu_kernel.enabled(request.param == "kernel"):
        yield request.param


def random_skew(batch: int, size: int, norm: float, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Random skew matrices with spectral norm ``norm`` (the largest rotation angle)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, size, size, generator=gen, dtype=torch.float64)
    a = u - u.mT
    a = a / torch.linalg.matrix_norm(a, 2, keepdim=True) * norm
    return a.to(dtype)


@pytest.mark.parametrize("size", BLOCKS)
@pytest.mark.parametrize("norm", NORMS)
def test_float32_matches_float64_matrix_exp(size, norm):
    a = random_skew(16, size, norm, seed=size)
    a32 = a.float()
    ref = torch.linalg.matrix_exp(a32.double())
    out = skew_expm(a32)
    assert out.dtype == torch.float32
    err = (out.double() - ref).abs().max().item()
    # The exponential's condition number grows with the angle: an error of a few
    # float32 ulps times max(1, |A|), the same order as float32 matrix_exp.
    assert err <= 4 * math.sqrt(size) * EPS32 * max(1.0, norm), err
    orth = (out.double().mT @ out.double() - torch.eye(size, dtype=torch.float64)).abs().max().item()
    assert orth <= 8 * math.sqrt(size) * EPS32 * max(1.0, norm), orth


@pytest.mark.parametrize("size", BLOCKS)
@pytest.mark.parametrize("norm", [0.0, 1e-6, 0.5, 3.0, 50.0])
def test_float64_inputs_are_float64_accurate(size, norm):
    a = random_skew(4, size, norm, seed=100 + size)
    ref = torch.linalg.matrix_exp(a)
    err = (skew_expm(a) - ref).abs().max().item()
    assert err <= 1e-13 * max(1.0, norm), err


@pytest.mark.parametrize("size", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("norm", [1e-3, 0.7, 4.0])
def test_gradcheck_through_skew_parametrisation(size, norm):
    u = torch.randn(2, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
    u = (u / torch.linalg.matrix_norm(u - u.mT, 2, keepdim=True) * norm).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: skew_expm(x - x.mT), (u,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("size", [5, 8])
def test_gradcheck_many_squarings(size):
    # |A| = 40 needs ~9 squarings at float64 accuracy: the reverse pass goes through all of them.
    u = random_skew(1, size, 40.0, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: skew_expm(x - x.mT), (u,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size", BLOCKS)
def test_gradient_matches_autograd_of_matrix_exp_float32(size):
    # Our hand-written backward against autograd through the oracle, in float32 at moderate norm.
    a = random_skew(8, size, 2.0, seed=size).float()
    g = torch.randn(8, size, size, generator=torch.Generator().manual_seed(1))
    x1 = a.clone().requires_grad_()
    skew_expm(x1 - x1.mT).backward(g)
    x2 = a.double().requires_grad_()
    torch.linalg.matrix_exp(x2 - x2.mT).backward(g.double())
    err = (x1.grad.double() - x2.grad).abs().max().item()
    assert err <= 1e-5 * max(1.0, x2.grad.abs().max().item()), err


@pytest.mark.parametrize("size", BLOCKS)
def test_zero_is_identity_with_identity_derivative(size):
    # exp(0) = I and d exp(A)/dA at 0 is the identity map: no NaN from the closed forms' guards.
    a = torch.zeros(3, size, size, requires_grad=True)
    out = skew_expm(a)
    assert torch.equal(out.detach(), torch.eye(size).expand(3, size, size))
    g = torch.randn(3, size, size)
    out.backward(g)
    assert torch.isfinite(a.grad).all()
    # Only the skew part of the gradient is meaningful for the closed forms.
    assert torch.allclose(a.grad - a.grad.mT, g - g.mT, atol=1e-6)


@pytest.mark.parametrize("size", BLOCKS)
@pytest.mark.parametrize("norm", [1e-30, 1e-12, 1e-7, 1e4])
def test_gradients_finite_at_tiny_and_huge_angles(size, norm):
    a = random_skew(4, size, norm, seed=11).float().requires_grad_()
    skew_expm(a).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_general_algorithm_agrees_with_closed_forms():
    for size in (2, 3, 4):
        a = random_skew(32, size, 2.5, seed=size).float()
        assert torch.allclose(expm_taylor_ss(a), skew_expm(a), atol=2e-6)


def test_leading_dims_and_empty_batch():
    a = random_skew(6, 5, 1.0).float().view(2, 3, 5, 5)
    assert skew_expm(a).shape == (2, 3, 5, 5)
    assert skew_expm(torch.zeros(0, 7, 7)).shape == (0, 7, 7)
    with pytest.raises(ValueError):
        skew_expm(torch.zeros(3, 4))


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(2, 24),
    log_norm=st.floats(-6, 3.5),
    seed=st.integers(0, 2**16),
)
def test_property_rotation_and_inverse(size, log_norm, seed):
    """exp(A) is orthogonal with det +1, and exp(-A) = exp(A)^T, for any skew A."""
    norm = 10.0**log_norm
    a = random_skew(2, size, norm, seed=seed).float()
    r = skew_expm(a).double()
    eye = torch.eye(size, dtype=torch.float64)
    tol = 8 * math.sqrt(size) * EPS32 * max(1.0, norm)
    assert (r.mT @ r - eye).abs().max() <= tol
    assert (skew_expm(-a).double() - r.mT).abs().max() <= 2 * tol
    assert torch.allclose(torch.linalg.det(r), torch.ones(2, dtype=torch.float64), atol=size * tol + 1e-6)


@pytest.mark.parametrize("scale", [0.0, 1e-6, 0.3, 5.0, 300.0])
def test_expm_4x4_scaled_matches_matrix_exp(scale):
    from liere.ops import expm_4x4_scaled

    s = random_skew(6, 4, 1.0, seed=9).float().view(2, 3, 4, 4)
    t = scale * torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(2))
    ref = torch.linalg.matrix_exp((t[..., None, None] * s).double())
    err = (expm_4x4_scaled(s, t).double() - ref).abs().max().item()
    assert err <= 8 * EPS32 * max(1.0, 2 * scale), err


def test_expm_4x4_scaled_gradcheck_and_zero():
    from liere.ops import expm_4x4_scaled

    u = torch.randn(3, 4, 4, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.7, -2.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, t: expm_4x4_scaled(u - u.mT, t), (u, t))
    z = torch.zeros(2, 4, 4, requires_grad=True)
    expm_4x4_scaled(z - z.mT, torch.ones(2)).sum().backward()
    assert torch.isfinite(z.grad).all()


# ----- large angles (issue 11, item 4) and the chunked, recomputing backward (issue 10) --------------------
@settings(max_examples=30, deadline=None)
@given(size=st.sampled_from([5, 8, 16, 33, 64]), log_norm=st.floats(-6, 8), seed=st.integers(0, 2**16))
def test_property_float32_stays_orthogonal_and_accurate_at_any_angle(size, log_norm, seed):
    """|A| from 1e-6 to 1e8 radians (positions up to 1e6 times generators of ~100): exp(A) in float32 is
    orthogonal to 1e-5 and equals float64 matrix_exp of the same float32 input to 1e-5."""
    norm = 10.0**log_norm
    a = random_skew(2, size, norm, seed=seed).float()
    r = skew_expm(a).double()
    eye = torch.eye(size, dtype=torch.float64)
    assert (r.mT @ r - eye).abs().max() <= 1e-5
    assert (r - torch.linalg.matrix_exp(a.double())).abs().max() <= 1e-5
    x = torch.randn(2, size, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    assert ((r @ x).norm(dim=-2) / x.norm(dim=-2) - 1).abs().max() <= 1e-5


@pytest.mark.parametrize("size", [5, 8, 64])
def test_chunked_forward_and_backward_match_one_chunk(size, monkeypatch):
    """Chunking (on the CPU, a few MB per intermediate) changes neither the value nor the gradient."""
    import liere.ops.expm as expm

    a = random_skew(37, size, 30.0, seed=size).float()
    g = torch.randn(37, size, size, generator=torch.Generator().manual_seed(2))

    def run():
        x = a.clone().requires_grad_()
        out = skew_expm(x)
        out.backward(g)
        return out.detach(), x.grad

    ref_out, ref_grad = run()
    monkeypatch.setattr(expm, "_CHUNK_BYTES", 5 * size * size * 4)  # chunks of 5 matrices, the last one of 2
    out, grad = run()
    torch.testing.assert_close(out, ref_out, atol=0, rtol=0)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6 * ref_grad.abs().max().item(), rtol=0)


@pytest.mark.parametrize("size", [5, 16, 64])
@pytest.mark.parametrize("keeps", [False, True], ids=["recompute", "keep"])
def test_chunks_of_mixed_norms_match_float64_oracle(size, keeps, monkeypatch):
    """Rows of a chunk are sorted by squaring count, and chunks gather matrices of similar norm from anywhere
    in the batch: norms from 0.06 to 4,000 radians in shuffled order (0 to 12 squarings; some chunks run in
    float64), each result and gradient back in its own row. ``keep``: one chunk that keeps its squares."""
    import liere.ops.expm as expm

    norms = 2.0 ** torch.linspace(-4, 12, 23)
    norms = norms[torch.randperm(23, generator=torch.Generator().manual_seed(size))]
    if keeps:  # float32 throughout: at most 8 squarings (2^-4 .. 2^3.5 radians)
        norms = norms.clamp(max=2.0**3.5)
    a = torch.cat([random_skew(1, size, float(nm), seed=i) for i, nm in enumerate(norms)]).float()
    g = torch.randn(23, size, size, generator=torch.Generator().manual_seed(4))
    monkeypatch.setattr(expm, "_SAVE_INPUT_BYTES", 1 << 30 if keeps else 0)
    monkeypatch.setattr(expm, "_CHUNK_BYTES", 4 * size * size * 4)  # chunks of 4 matrices
    x = a.clone().requires_grad_()
    out = skew_expm(x)
    (grad,) = torch.autograd.grad(out, x, g)
    a64 = a.double().requires_grad_()
    ref = torch.linalg.matrix_exp(a64)
    (ref_grad,) = torch.autograd.grad(ref, a64, g.double())
    assert (out.double() - ref.detach()).abs().amax((-2, -1)).max() <= 1e-5
    err = (grad.double() - ref_grad).abs().amax((-2, -1)) / ref_grad.abs().amax((-2, -1))
    assert err.max() <= 1e-4, err


@pytest.mark.parametrize("size", [5, 8])
def test_gradcheck_chunked_float64(size, monkeypatch):
    """The recomputing backward, chunk by chunk, in float64 with gradcheck."""
    import liere.ops.expm as expm

    monkeypatch.setattr(expm, "_CHUNK_BYTES", 2 * size * size * 8)
    u = random_skew(5, size, 6.0, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: skew_expm(x - x.mT), (u,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size", [5, 16])
def test_gradient_of_float64_promoted_chunks(size):
    """Float32 inputs with huge angles run in float64; their gradient is autograd's of float64 matrix_exp."""
    a = random_skew(3, size, 5e4, seed=size).float()
    g = torch.randn(3, size, size, generator=torch.Generator().manual_seed(3))
    x1 = a.clone().requires_grad_()
    out = skew_expm(x1)
    assert out.dtype == torch.float32
    out.backward(g)
    assert x1.grad.dtype == torch.float32
    x2 = a.double().requires_grad_()
    torch.linalg.matrix_exp(x2).backward(g.double())
    err = (x1.grad.double() - x2.grad).abs().max().item()
    assert err <= 1e-4 * x2.grad.abs().max().item(), err


def test_large_inputs_save_only_the_input_and_both_backwards_agree(monkeypatch, expm_path):
    """Above _SAVE_INPUT_BYTES only the input is held for the backward (the squares are recomputed there);
    below it the polynomial and squares are kept. Both backwards give the same gradient, which matches
    autograd through float64 torch.linalg.matrix_exp. (The torch path's bookkeeping: the kernel always
    keeps only the input and recomputes, see test_cpu_kernel.)"""
    import liere.ops.expm as expm_module

    if expm_path == "kernel":
        pytest.skip("the torch path's saved tensors")

    a = random_skew(4, 8, 50.0, seed=1).float().requires_grad_()
    g = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    grads = {}
    for limit in (0, 1 << 24):
        monkeypatch.setattr(expm_module, "_SAVE_INPUT_BYTES", limit)
        out = skew_expm(a)
        saved = list(out.grad_fn.saved_tensors)
        if limit == 0:
            assert len(saved) == 1 and saved[0].shape == a.shape
        else:
            assert len(saved) > 7  # input, counts, B, B^2, B^4, two polynomial parts, the squares
        (grads[limit],) = torch.autograd.grad(out, a, g)
    a64 = a.detach().double().requires_grad_()
    (ref,) = torch.autograd.grad(torch.linalg.matrix_exp(a64), a64, g.double())
    for got in grads.values():
        torch.testing.assert_close(got.double(), ref, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0], grads[1 << 24], atol=1e-5, rtol=1e-5)




def test_a_nan_matrix_gives_nan_in_its_own_row_only():
    """A diverged generator makes its own exponential NaN (as matrix_exp does), not an exception, and
    leaves the other rows of the batch exact."""
    a = random_skew(5, 8, 3.0, seed=7).float()
    a[2, 0, 1] = a[2, 1, 0] = float("nan")
    x = a.clone().requires_grad_()
    out = skew_expm(x)
    out.sum().backward()
    bad = out.isnan().flatten(1).any(1)
    assert bad.tolist() == [False, False, True, False, False]
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(out[keep].double(), torch.linalg.matrix_exp(a[keep].double()), atol=1e-5, rtol=0)
    assert torch.isfinite(x.grad[keep]).all()

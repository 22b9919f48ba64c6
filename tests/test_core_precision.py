"""Half-precision inputs give outputs within 1e-2 of float32, at large and at normalised positions."""

import pytest
import torch

import liere

from oracle import ROTARY, make


@pytest.mark.parametrize("name", ROTARY)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_half_inputs_match_float32(name, dtype, scale):
    scaled = {"init_scale": 1.0 / scale} if "init_scale" in liere.METHODS[name].options else {}
    pe = make(name, head_dim=32, num_heads=2, **scaled)
    pos = torch.rand(16, pe.pos_dims) * scale
    # Inputs representable exactly in half precision, so the only difference is the rotation's arithmetic.
    q = torch.randn(2, 2, 16, 32).to(dtype)
    ref, _ = pe(q.float(), q.float(), pos)
    out, _ = pe(q, q, pos)
    assert out.dtype == dtype
    # 1e-2 relative to the data's scale; half rounding of the output itself is ~4e-3 (bf16) near |x| ~ 1.
    err = (out.float() - ref).abs().max().item() / ref.abs().max().item()
    assert err < 1e-2, err


@pytest.mark.parametrize("name", ROTARY)
def test_rotation_is_float32_under_autocast(name):
    pe = make(name)
    pos = torch.rand(4, pe.pos_dims)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        R = pe.rotation(pos)
        q = torch.randn(1, 2, 4, 16, dtype=torch.bfloat16)
        q2, k2 = pe(q, q, R)
    assert R.dtype == torch.float32
    assert q2.dtype == torch.bfloat16 and k2.dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["rope", "rope_axial", "liere", "comrope_ld"])
def test_large_positions_stay_orthogonal(name):
    pe = make(name, init_scale=1e-3) if name == "liere" else make(name)
    pos = torch.tensor([[1e4] * pe.pos_dims, [-1e4 + 0.5] * pe.pos_dims])
    R = pe.rotation_matrix(pos).double()
    eye = torch.eye(16, dtype=torch.float64).expand_as(R)
    torch.testing.assert_close(R @ R.mT, eye, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name,block_size", [("liere", b) for b in (2, 3, 4, 5, 8, 16)]
                         + [(n, None) for n in ROTARY if n != "liere"])
def test_rotation_is_orthogonal_from_1e_minus_6_to_1e6(name, block_size):
    """|R(p) q| = |q| to 1e-5 relative at every position from 1e-6 to 1e6, every block size including dense
    (head_dim 16), with the methods' default initialisations (issue 11, item 4)."""
    opts = {"block_size": block_size} if block_size else {}
    pe = make(name, head_dim=16, num_heads=2, **opts)
    scales = torch.logspace(-6, 6, 13)
    pos = torch.cat([scales[:, None] * torch.ones(1, pe.pos_dims), -scales[:, None] * torch.linspace(1, 0.3, pe.pos_dims)])
    q = torch.randn(2, 2, pos.shape[0] + pe.num_prefix_tokens, 16)
    out, _ = pe(q, q, pos)
    assert torch.isfinite(out).all()
    rel = (out.double().norm(dim=-1) / q.double().norm(dim=-1) - 1).abs().max().item()
    assert rel <= 1e-5, rel

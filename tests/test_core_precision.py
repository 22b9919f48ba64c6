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

"""Mixed precision: rotations in float32 whatever autocast says; rotated q, k in the input's dtype, as SDPA needs."""

import pytest
import torch
import torch.nn.functional as F

import liere
from liere.models import build_model

from ._helpers import ALL, ROTARY, build

DTYPES = [torch.bfloat16, torch.float16]


def _autocast_supported(device: str, dtype: torch.dtype) -> bool:
    try:
        with torch.autocast(device, dtype=dtype):
            return torch.nn.functional.linear(torch.ones(2, 2, device=device), torch.ones(2, 2, device=device)).dtype == dtype
    except (RuntimeError, AssertionError):
        return False


def _vit(method: str, device: str = "cpu"):
    options = {"block_size": ROTARY[method]} if method in ROTARY else {}
    name = "liere" if method == "liere_ss" else method
    return build_model("vit", "micro", name, input_shape=(16, 16), patch_size=4, num_classes=3, depth=2,
                       **options).to(device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ROTARY)
def test_rotation_is_float32_and_rotated_qk_keep_the_autocast_dtype(name, dtype):
    if not _autocast_supported("cpu", dtype):
        pytest.skip(f"CPU autocast does not support {dtype} in this torch")
    pe = build(name, num_prefix_tokens=1)
    lin = torch.nn.Linear(16, 16)
    x = torch.randn(2, 2, 17, 16)
    with torch.autocast("cpu", dtype=dtype):
        q, k = lin(x), lin(-x)
        assert q.dtype == dtype
        R = pe.rotation(liere.positions.grid((4, 4)))
        q2, k2 = pe(q, k, R)
        out = F.scaled_dot_product_attention(q2, k2, k2)
    for t in (R.cos, R.sin, R.blocks):
        assert t is None or t.dtype == torch.float32
    assert q2.dtype == k2.dtype == out.dtype == dtype
    # Math in float32, one rounding at the end: exactly the float32 rotation of the same half inputs, rounded.
    want = pe(q.float(), k.float(), pe.rotation(liere.positions.grid((4, 4))))
    assert torch.equal(q2, want[0].to(dtype)) and torch.equal(k2, want[1].to(dtype))


@pytest.mark.parametrize("name", ROTARY)
def test_half_inputs_without_autocast_come_back_in_their_dtype(name):
    pe = build(name)
    R = pe.rotation(torch.randn(9, 2))
    for dtype in DTYPES:
        x = torch.randn(2, 2, 9, 16).to(dtype)
        got = liere.apply_rotation(x, R)
        assert got.dtype == dtype
        assert torch.equal(got, liere.apply_rotation(x.float(), R).to(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ALL)
def test_vit_trains_under_cpu_autocast(name, dtype):
    if not _autocast_supported("cpu", dtype):
        pytest.skip(f"CPU autocast does not support {dtype} in this torch")
    torch.manual_seed(0)
    model = _vit(name)
    x = torch.randn(2, 3, 16, 16)
    ref = model(x)
    with torch.autocast("cpu", dtype=dtype):
        out = model(x)
    out.float().sum().backward()
    assert out.dtype == dtype
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)  # half precision, not a different function


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ROTARY)
def test_cuda_autocast_rotation_and_sdpa(name, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU has no bf16")
    torch.manual_seed(0)
    model = _vit(name, "cuda")
    x = torch.randn(2, 3, 16, 16, device="cuda")
    ref = model(x)
    with torch.autocast("cuda", dtype=dtype):
        out = model(x)
        R = model.pe.rotation(model.train_positions)
    out.float().sum().backward()
    assert out.dtype == dtype and R.dtype == torch.float32
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)

"""Large-model loading conventions: ``build(device=, dtype=)``, ``reset_parameters()``, and a whole ViT built on
the meta device, moved with ``to_empty()`` and filled by ``load_state_dict`` (issue 11, item 8).

The reference is always a model built normally on the CPU: a lazily built one must compute exactly what it does.
"""

import pytest
import torch

import liere
from liere.models.vit import ViT

METHODS = sorted(liere.METHODS)


def _kwargs(method):
    kw = dict(pos_dims=1 if method == "rope" else 2, head_dim=16, num_heads=2)
    if method == "absolute":
        kw["grid_shape"] = (4, 4)
        kw["embed_dim"] = 32
    return kw


@pytest.mark.parametrize("method", METHODS)
def test_build_on_meta_then_reset_parameters_draws_what_construction_draws(method):
    torch.manual_seed(7)
    reference = liere.build(method, **_kwargs(method))
    lazy = liere.build(method, device="meta", **_kwargs(method))
    assert all(t.device.type == "meta" for t in (*lazy.parameters(), *lazy.buffers()))
    lazy = lazy.to_empty(device="cpu")
    torch.manual_seed(7)
    lazy.reset_parameters()
    want = dict(reference.named_parameters())
    for name, p in lazy.named_parameters():
        torch.testing.assert_close(p, want[name], rtol=0, atol=0, msg=name)
    for (name, a), (_, b) in zip(reference.named_buffers(), lazy.named_buffers()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("none",)])
def test_reset_parameters_changes_learned_tensors_in_place(method):
    enc = liere.build(method, **_kwargs(method))
    before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    ids = {n: id(p) for n, p in enc.named_parameters()}
    with torch.no_grad():
        for p in enc.parameters():
            p.fill_(0.123)
    torch.manual_seed(11)
    enc.reset_parameters()
    for n, p in enc.named_parameters():
        assert id(p) == ids[n]                                   # the same Parameter objects (optimisers keep them)
        assert not torch.all(p == 0.123), n
        assert p.shape == before[n].shape


def test_build_dtype_casts_learned_tensors_and_keeps_fixed_frequencies_float32():
    enc = liere.build("rope_axial", pos_dims=2, head_dim=16, num_heads=2, dtype=torch.bfloat16)
    assert all(b.dtype == torch.float32 for b in enc.buffers() if b.is_floating_point())
    enc = liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, block_size=8, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in enc.parameters())


@pytest.mark.parametrize("method", ["liere", "rope_axial", "rope_mixed", "spherical", "comrope_ld", "absolute",
                                    "string"])
def test_vit_built_on_meta_equals_the_eager_model(method):
    kw = dict(input_shape=(16, 16), patch_size=4, num_classes=3, dim=32, depth=2, num_heads=2, method=method,
              position_jitter=0.0)
    if method == "liere":
        kw["block_size"] = 4
    torch.manual_seed(0)
    eager = ViT(**kw).eval()
    with torch.device("meta"):
        lazy = ViT(**kw)
    lazy = lazy.to_empty(device="cpu")
    lazy.load_state_dict(eager.state_dict())
    lazy.eval()
    for name, buf in eager.named_buffers():
        torch.testing.assert_close(dict(lazy.named_buffers())[name], buf, rtol=0, atol=0, msg=name)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(lazy(x), eager(x))
        torch.testing.assert_close(lazy(torch.randn(2, 3, 24, 24)).shape, torch.Size([2, 3]))


def test_vit_init_non_persistent_buffers_restores_zeroed_buffers():
    model = ViT(input_shape=(16, 16), patch_size=4, num_classes=3, dim=32, depth=1, num_heads=2, method="rope_axial")
    want = {n: b.clone() for n, b in model.named_buffers()}
    for b in model.buffers():
        b.zero_()
    model.init_non_persistent_buffers()
    for n, b in model.named_buffers():
        torch.testing.assert_close(b, want[n], rtol=0, atol=0, msg=n)

"""timm models that already have RoPE (RoPE-ViT axial / mixed, EVA-02, SBB rope, DINOv3): convert carries it over.

Parity: randomly initialised timm models (weights re-drawn so that attention matters), same weights, outputs
compared with timm's own forward at several image sizes, including sizes the model was not built for.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm")

from liere.integrations.timm import convert  # noqa: E402
from liere.integrations.timm_rope import read_rope  # noqa: E402

# name -> (rope kind, pairing, extra model kwargs); small: 2 blocks, 2 heads of 32 channels, 8-pixel patches.
MODELS = {
    "vit_small_patch16_rope_224": ("cat", "interleaved", {}),  # RoPE-ViT axial (naver), 'xy', theta 100
    "vit_small_patch16_rope_mixed_224": ("mixed", "interleaved", {}),  # RoPE-ViT mixed (naver)
    "vit_small_patch16_rope_mixed_ape_224": ("mixed", "interleaved", {}),  # mixed + absolute table
    "eva02_tiny_patch14_224": ("cat", "interleaved", {}),  # EVA-02: ref_feat_shape rescaling, SwiGLU
    "vit_medium_patch16_rope_reg1_gap_256": ("cat", "interleaved", {}),  # SBB: register token, no CLS
    "vit_small_patch16_dinov3": ("dinov3", "half", {}),  # DINOv3: centred coords, rotate_half, 4 registers
    "eva02_tiny_patch14_224+half": ("cat", "half", {"rope_rotate_half": True}),
}
SIZES = [(32, 32), (48, 40), (24, 64)]


def make(name, seed=0, **kwargs):
    name, _, _ = name.partition("+")
    extra = {**MODELS.get(name, MODELS.get(name + "+half", (None, None, {})))[2], **kwargs}
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=2,
                              num_classes=4, dynamic_img_size=True, **extra)
    with torch.no_grad():  # redraw every weight (layer scales start at 1e-5 in timm): attention must matter
        for pname, p in model.named_parameters():
            if not pname.startswith("rope."):
                p.copy_(torch.randn_like(p) * (0.3 if p.ndim > 1 else 0.5) + (1.0 if "gamma" in pname else 0.0))
    return model.eval()


def model_kwargs(name):
    return MODELS[name][2]


@pytest.mark.parametrize("name", MODELS)
def test_read_rope_finds_the_kind_and_pairing(name):
    kind, pairing, extra = MODELS[name]
    model = make(name.partition("+")[0], **extra)
    spec = read_rope(model, head_dim=32)
    assert (spec.kind, spec.pairing) == (kind, pairing)
    assert spec.freqs.shape == ((2, 2, 2, 16) if kind == "mixed" else (1, 2, 1, 16))


@pytest.mark.parametrize("name", MODELS)
def test_converted_equals_timm_at_several_sizes(name):
    kind, pairing, extra = MODELS[name]
    timm_model = make(name.partition("+")[0], **extra)
    model = convert(copy.deepcopy(timm_model))
    assert model.rope is None and model.liere_pe.pe.pairing == pairing
    assert model.liere_pe.pe.name == ("rope_mixed" if kind == "mixed" else "rope_axial")
    no_rope = copy.deepcopy(timm_model)
    no_rope.rope = None
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            want, got = timm_model(x), model(x)
            assert (no_rope(x) - want).abs().max() > 1e-2  # the test sees the rotary encoding
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["vit_small_patch16_rope_mixed_224", "vit_small_patch16_rope_224",
                                  "vit_small_patch16_dinov3"])
def test_train_mode_forward_and_backward_match_timm(name):
    timm_model = make(name).train()
    model = convert(copy.deepcopy(timm_model)).train()
    x = torch.randn(2, 3, 40, 32)
    want, got = timm_model(x), model(x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    want.square().sum().backward()
    got.square().sum().backward()
    if name.endswith("mixed_224"):  # the learned frequencies get timm's gradient
        torch.testing.assert_close(model.liere_pe.pe.freqs.grad, timm_model.rope.freqs.grad.permute(1, 0, 2, 3),
                                   atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight.grad if model.blocks[0].attn.qkv is not None
                               else model.blocks[0].attn.q_proj.weight.grad,
                               timm_model.blocks[0].attn.qkv.weight.grad if timm_model.blocks[0].attn.qkv is not None
                               else timm_model.blocks[0].attn.q_proj.weight.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["vit_small_patch16_rope_mixed_224", "vit_small_patch16_rope_224",
                                  "vit_small_patch16_dinov3", "eva02_tiny_patch14_224"])
@pytest.mark.parametrize("block_size", [4, 8, 32])
def test_liere_upgrade_starts_from_the_pretrained_function_and_learns_couplings(name, block_size):
    timm_model = make(name)
    model = convert(copy.deepcopy(timm_model), "liere", block_size=block_size)
    pe = model.liere_pe.pe
    assert pe.name == "liere" and pe.block_size == block_size
    for h, w in SIZES:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(model(x), timm_model(x), atol=5e-5, rtol=1e-5)
    model.train()
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    rows, cols = torch.triu_indices(block_size, block_size, offset=1)
    coupling = ~((rows % 2 == 0) & (cols == rows + 1))  # not a pretrained 2x2 sub-block
    grad = pe.upper.grad[..., coupling]
    assert grad.abs().amax() > 0 and (grad != 0).float().mean() > 0.5
    assert pe.upper[..., coupling].abs().max() == 0  # couplings start at zero


@pytest.mark.parametrize("name,method,block_size", [
    ("vit_small_patch16_rope_mixed_224", "comrope_ld", 2),
    ("vit_small_patch16_rope_mixed_224", "comrope_ld", 4),  # at timm's init, each group shares one direction
    ("vit_small_patch16_rope_224", "comrope_ld", 2),
    ("vit_small_patch16_rope_224", "comrope_ld", 4),  # axial: a block of 2 pairs never mixes axes
    ("vit_small_patch16_dinov3", "comrope_ld", 8),
    ("vit_small_patch16_rope_224", "rope_mixed", 2),  # fixed axial -> learned mixed
])
def test_other_exact_starts(name, method, block_size):
    timm_model = make(name)
    model = convert(copy.deepcopy(timm_model), method, block_size=block_size)
    x = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), timm_model(x), atol=5e-5, rtol=1e-5)


def test_no_exact_start_is_a_clear_error_and_discard_starts_fresh():
    trained = make("vit_small_patch16_rope_mixed_224")
    with torch.no_grad():
        trained.rope.freqs.add_(0.1 * torch.randn_like(trained.rope.freqs))  # no longer along one direction per group
    with pytest.raises(ValueError, match="not proportional"):
        convert(trained, "comrope_ld", block_size=4)
    with pytest.raises(ValueError, match="no exact start"):
        convert(make("vit_small_patch16_rope_224"), "spherical")
    with pytest.raises(ValueError, match="even block_size"):
        convert(make("vit_small_patch16_rope_224"), "liere", block_size=6)
    with pytest.raises(ValueError, match="rope_mixed"):
        convert(make("vit_small_patch16_rope_mixed_224"), "rope_axial")
    model = convert(make("vit_small_patch16_rope_224"), "spherical", pretrained_rope="discard")
    assert model.liere_pe.pe.pairing == "interleaved" and model.liere_pe.timm_grid is None
    assert model(torch.randn(1, 3, 40, 40)).shape == (1, 4)


def test_converted_rope_model_round_trips_compiles_and_exports_state():
    model = convert(make("vit_small_patch16_rope_mixed_224"), "liere", block_size=8)
    twin = convert(make("vit_small_patch16_rope_mixed_224", seed=1), "liere", block_size=8)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x), atol=0, rtol=0)
    copied = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(copied(x), model(x), atol=0, rtol=0)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=0)


def test_a_model_built_for_a_fixed_size_becomes_dynamic():
    torch.manual_seed(0)
    timm_model = timm.create_model("vit_small_patch16_rope_mixed_224", pretrained=False, img_size=32, patch_size=8,
                                   depth=2, embed_dim=64, num_heads=2, num_classes=4).eval()
    model = convert(copy.deepcopy(timm_model))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), timm_model(x), atol=2e-5, rtol=1e-5)
        assert model(torch.randn(1, 3, 48, 64)).shape == (1, 4)


def test_onnx_export_of_an_upgraded_rope_vit_with_dynamic_size(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import warnings

    from liere.integrations.onnx import export, run_onnxruntime

    model = convert(make("vit_small_patch16_dinov3"), "liere", block_size=8).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export(model, torch.randn(2, 3, 32, 32), tmp_path / "dinov3_liere.onnx", dynamic_size=True)
    for shape in [(1, 3, 24, 40), (3, 3, 48, 48), (2, 3, 16, 64)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = model(x)
        torch.testing.assert_close(torch.from_numpy(run_onnxruntime(path, x)), ref, atol=1e-4, rtol=0)


def test_an_eva_model_without_rope_is_converted_through_the_same_hooks():
    plain = make("eva02_tiny_patch14_224", use_rot_pos_emb=False)
    assert plain.rope is None
    model = convert(copy.deepcopy(plain), "liere", block_size=8, remove_abs_pos=True)
    assert model.liere_pe.timm_grid is None and model.liere_pe.convention == "liere"
    x = torch.randn(2, 3, 40, 32)
    with torch.no_grad():
        out = model(x)
        model.liere_pe.pe.upper.zero_()  # identity rotation: back to the model without its table
        plain.pos_embed = None
        torch.testing.assert_close(model(x), plain(x), atol=1e-5, rtol=0)
    assert not torch.allclose(out, model(x), atol=1e-4)

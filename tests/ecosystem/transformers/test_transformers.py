"""liere.integrations.transformers.convert on Hugging Face ViT and DINOv2 (runs where transformers imports)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from liere.integrations.transformers import convert  # noqa: E402

from .._helpers import oracle_with_prefix  # noqa: E402

SMALL = dict(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=128, num_labels=4)


def vit(**extra):
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(transformers.ViTConfig(**SMALL, **extra)).eval()


def dinov2(**extra):
    torch.manual_seed(0)
    return transformers.Dinov2ForImageClassification(transformers.Dinov2Config(**SMALL, **extra)).eval()


def dinov2_registers():
    cls = getattr(transformers, "Dinov2WithRegistersForImageClassification", None)
    if cls is None:
        pytest.skip("this transformers has no Dinov2WithRegisters")
    torch.manual_seed(0)
    return cls(transformers.Dinov2WithRegistersConfig(**SMALL, num_register_tokens=2)).eval()


MODELS = {"vit": vit, "dinov2": dinov2, "dinov2_registers": dinov2_registers}


@pytest.mark.parametrize("name", MODELS)
def test_identity_rotation_leaves_the_model_unchanged(name):
    """With zero generators R = I: the hooks and the hook-driven interpolation change nothing."""
    plain = MODELS[name]()
    model = convert(copy.deepcopy(plain), "liere", block_size=8)
    with torch.no_grad():
        model.liere_pe.pe.upper.zero_()
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(model(x).logits, plain(x).logits, atol=1e-5, rtol=0)
    assert set(model.state_dict()) - set(plain.state_dict()) == {"liere_pe.pe.upper"}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method,block_size", [("liere", 8), ("rope_mixed", 2), ("comrope_ld", 4)])
def test_attention_equals_a_manual_dense_reference(name, method, block_size):
    """Layer 1's attention output equals q, k rotated by float64 matrix_exp of the generators, by hand."""
    model = convert(MODELS[name](), method, block_size=block_size)
    layer = [m for m in model.modules() if hasattr(m, "q_proj") or hasattr(m, "query")][1]
    q_proj, k_proj, v_proj = ((layer.q_proj, layer.k_proj, layer.v_proj) if hasattr(layer, "q_proj")
                              else (layer.query, layer.key, layer.value))
    seen = {}
    layer.register_forward_hook(lambda m, args, out: seen.update(out=out[0]), with_kwargs=False)
    layer.register_forward_pre_hook(lambda m, args, kwargs: seen.update(x=kwargs.get("hidden_states", args[0] if args
                                                                                  else None)), with_kwargs=True)
    model(torch.randn(2, 3, 40, 24))  # a 5 x 3 grid; trained at 4 x 4
    x = seen["x"]
    pe = model.liere_pe.pe
    p = pe.num_prefix_tokens
    assert x.shape[1] == p + 15
    conv = model.liere_pe.convention
    train = (4, 4) if conv == "liere" else None
    import liere
    pos = liere.positions.grid((5, 3), conv, train_shape=train)
    rot = oracle_with_prefix(pe, pos, layer=1)  # (H, P+N, D, D)
    b, n, _ = x.shape
    # F.linear, not the modules: calling q_proj / k_proj would run the rotation hooks again.
    q, k, v = (F.linear(x, proj.weight, proj.bias).double().reshape(b, n, 2, 32).transpose(1, 2)
               for proj in (q_proj, k_proj, v_proj))
    q, k = torch.einsum("hnij,bhnj->bhni", rot, q), torch.einsum("hnij,bhnj->bhni", rot, k)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(32), -1)
    want = (weights @ v).transpose(1, 2).reshape(b, n, 64).float()
    got = seen["out"]
    # transformers 5 attention modules end with o_proj; older ones (self-attention) return the context.
    o_proj = getattr(layer, "o_proj", None)
    if o_proj is not None:
        want = o_proj(want)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_trains_and_runs_at_other_sizes(name):
    model = convert(MODELS[name](), "liere", block_size=8, remove_abs_pos=True).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(model.liere_pe.pe.upper.grad[l].abs().sum() > 0 for l in range(2))  # every layer's generators
    model.eval()
    for h, w in [(32, 32), (48, 40), (24, 64)]:
        assert model(torch.randn(1, 3, h, w)).logits.shape == (1, 4)


def test_half_pairing_and_state_dict_round_trip(tmp_path):
    model = convert(vit(), "rope_axial", pairing="half")
    assert model.liere_pe.pe.pairing == "half"
    other = convert(vit(), "liere", block_size=8)
    other2 = convert(vit(), "liere", block_size=8)
    with torch.no_grad():
        other.liere_pe.pe.upper.mul_(0.5)
    other2.load_state_dict(other.state_dict())
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(other(x).logits, other2(x).logits)
        assert model(x).logits.shape == (2, 4)


def test_convert_rejects_what_it_cannot_handle():
    with pytest.raises(TypeError, match="ViT"):
        convert(torch.nn.Linear(2, 2), "liere")
    with pytest.raises(ValueError, match="rotary"):
        convert(vit(), "absolute")
    model = convert(vit(), "rope_axial")
    with pytest.raises(ValueError, match="already"):
        convert(model, "liere")

"""liere.integrations.timm.convert on real timm VisionTransformers (runs in the timm CI job's own venv)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

timm = pytest.importorskip("timm")

from liere.integrations.timm import RotaryAttention, convert  # noqa: E402

from .._helpers import oracle_with_prefix  # noqa: E402

ROTARY = {"liere": 8, "comrope_ap": 4, "comrope_ld": 4, "rope_mixed": 2, "rope_axial": 2, "spherical": 3}


def make(img_size=32, patch_size=8, depth=2, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("dynamic_img_size", True)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size, patch_size=patch_size,
                             depth=depth, num_classes=4, **kwargs)


def converted(method="liere", **options):
    model = make(**{k: options.pop(k) for k in ("img_size", "patch_size", "reg_tokens", "dynamic_img_size")
                    if k in options})
    options.setdefault("block_size", ROTARY.get(method))
    return convert(model, method, **options)


def test_blocks_keep_timm_keys_and_weights_and_gain_only_the_encoding():
    plain = make()
    model = convert(copy.deepcopy(plain), "liere", block_size=8)
    assert all(isinstance(b.attn, RotaryAttention) for b in model.blocks)
    keys, plain_keys = set(model.state_dict()), set(plain.state_dict())
    assert plain_keys <= keys and {k.split(".")[0] for k in keys - plain_keys} == {"liere_pe"}
    # A timm checkpoint loads into the converted model: only the encoding's own parameters are new.
    fresh = convert(make(), "liere", block_size=8)
    result = fresh.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and all(k.startswith("liere_pe.") for k in result.missing_keys)
    torch.testing.assert_close(fresh.blocks[1].attn.qkv.weight, plain.blocks[1].attn.qkv.weight, atol=0, rtol=0)


@pytest.mark.parametrize("method", ROTARY)
def test_every_method_changes_the_output_and_trains(method):
    plain = make().eval()
    model = convert(copy.deepcopy(plain), method, block_size=ROTARY[method]).eval()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(model(x), plain(x), atol=1e-4)  # the PE is really applied
    model.train()
    model(x).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.liere_pe.parameters())


@pytest.mark.parametrize("reg_tokens", [0, 2])
def test_attention_equals_a_manual_dense_reference(reg_tokens):
    """Block 1's output equals q, k rotated by float64 matrix_exp of the generators at hand-made positions."""
    model = converted("liere", img_size=32, patch_size=8, reg_tokens=reg_tokens).eval()
    attn = model.blocks[1].attn
    seen = {}
    attn.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    model(torch.randn(2, 3, 40, 24))  # a 5 x 3 grid, trained at 4 x 4
    x = seen["x"]
    assert model.num_prefix_tokens == 1 + reg_tokens and x.shape[1] == 1 + reg_tokens + 15
    # The LieRE convention by hand: linspace(0, n / n_train, n) per axis, row-major.
    rows, cols = torch.linspace(0, 5 / 4, 5), torch.linspace(0, 3 / 4, 3)
    pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    rot = oracle_with_prefix(model.liere_pe.pe, pos, layer=1)  # (H, P+N, D, D) float64
    b, n, c = x.shape
    q, k, v = attn.qkv(x).double().reshape(b, n, 3, 3, 64).permute(2, 0, 3, 1, 4)
    q, k = torch.einsum("hnij,bhnj->bhni", rot, q), torch.einsum("hnij,bhnj->bhni", rot, k)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(64), -1)
    want = attn.proj((weights @ v).transpose(1, 2).reshape(b, n, c).float())
    torch.testing.assert_close(seen["out"], want, atol=1e-4, rtol=0)


def test_training_steps_reduce_the_loss():
    model = converted("liere", remove_abs_pos=True)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("remove_abs_pos", [False, True])
def test_eval_at_other_image_sizes(remove_abs_pos):
    model = converted("rope_mixed", remove_abs_pos=remove_abs_pos).eval()
    assert (model.pos_embed is None) == remove_abs_pos
    for h, w in [(32, 32), (48, 48), (24, 64)]:
        out = model(torch.randn(2, 3, h, w))
        assert out.shape == (2, 4) and torch.isfinite(out).all()
        assert model.liere_pe.rotation.num_tokens == 1 + (h // 8) * (w // 8)


def test_a_model_built_without_dynamic_img_size_becomes_dynamic():
    model = converted("comrope_ld", dynamic_img_size=False).eval()
    assert model(torch.randn(1, 3, 48, 40)).shape == (1, 4)


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = converted("liere", reg_tokens=1, remove_abs_pos=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    opt.step()  # move the generators away from their initialisation
    torch.save(model.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(123)
    other = convert(make(reg_tokens=1), "liere", block_size=8, remove_abs_pos=True)
    other.load_state_dict(torch.load(tmp_path / "model.pt"))
    model.eval(), other.eval()
    for size in (32, 48):
        x = torch.randn(2, 3, size, size)
        assert torch.equal(model(x), other(x))


def test_deepcopy_grad_checkpointing_and_compile():
    model = converted("spherical")
    x = torch.randn(2, 3, 32, 32)
    model(x)
    twin = copy.deepcopy(model)  # the pending rotation is not copied; the copy has its own encoding
    assert twin.blocks[0].attn.context is twin.liere_pe and twin.liere_pe.rotation is None
    model.eval(), twin.eval()
    assert torch.equal(model(x), twin(x))
    twin.train().set_grad_checkpointing(True)
    twin(x).sum().backward()
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0, [str(r.reason) for r in explanation.break_reasons]
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=0)


def test_convert_rejects_what_it_cannot_handle():
    with pytest.raises(TypeError, match="VisionTransformer"):
        convert(torch.nn.Linear(2, 2), "liere")
    with pytest.raises(ValueError, match="rotary"):
        convert(make(), "absolute")
    model = converted("rope_axial")
    with pytest.raises(ValueError, match="already"):
        convert(model, "liere")
    with pytest.raises(ValueError, match="name"):
        convert(make(), "nope")


@pytest.mark.parametrize("method", ["liere", "comrope_ld", "rope_mixed", "spherical"])
def test_timm_optimizer_factory_leaves_the_generators_undecayed(method):
    """convert extends model.no_weight_decay(), which timm.optim.create_optimizer_v2 reads."""
    from timm.optim import create_optimizer_v2

    model = converted(method, remove_abs_pos=True)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    undecayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    generators = list(model.liere_pe.parameters())
    assert generators and all(id(p) in undecayed for p in generators)
    assert id(model.blocks[0].attn.qkv.weight) in decayed  # weights are still decayed
    assert {"cls_token", "pos_embed"} <= model.no_weight_decay()  # timm's own names are kept
    # The declaration survives copies (EMA) and pickling.
    assert copy.deepcopy(model).no_weight_decay() == model.no_weight_decay()

"""ViT and text LM: shapes, pooling, registers, resolution changes, one rotation per forward,
per-layer generators that all train, causality, and the paper's parameter counts."""

import pytest
import torch
import torch.nn.functional as F

import liere
from liere.models import SIZES, TextTransformer, ViT, build_model

ROTARY_2D = ["liere", "rope_mixed", "rope_axial", "comrope_ld", "comrope_ap", "spherical"]


def small_vit(method="liere", **kw):
    opts = dict(input_shape=(16, 16), patch_size=4, in_chans=3, num_classes=5, dim=32, depth=3, num_heads=2)
    opts.update(kw)
    if method == "liere":
        opts.setdefault("block_size", 4)
    return ViT(method=method, **opts)


@pytest.mark.parametrize("method", ROTARY_2D + ["absolute", "none"])
@pytest.mark.parametrize("pool,registers", [("cls", 0), ("mean", 0), ("cls", 2), ("mean", 3)])
def test_vit_2d_shapes_pooling_registers(method, pool, registers):
    model = small_vit(method, pool=pool, num_registers=registers)
    assert model.num_prefix_tokens == int(pool == "cls") + registers
    assert getattr(model.pe, "num_prefix_tokens", model.num_prefix_tokens) == model.num_prefix_tokens
    out = model(torch.randn(3, 3, 16, 16))
    assert out.shape == (3, 5) and torch.isfinite(out).all()
    # Any image size the patch tiles works at evaluation time.
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 24, 32)).shape == (2, 5)


def test_vit_3d_tubelets():
    for method in ("liere", "rope_axial", "comrope_ld", "absolute"):
        model = ViT(input_shape=(4, 16, 16), patch_size=(2, 4, 4), in_chans=1, num_classes=3, dim=32, depth=2,
                    num_heads=2, method=method, block_size=4 if method == "liere" else None)
        assert model.grid_shape == (2, 4, 4)
        assert model(torch.randn(2, 1, 4, 16, 16)).shape == (2, 3)
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 1, 8, 24, 24)).shape == (1, 3)  # longer clip, larger frames


def test_pooling_reads_the_right_tokens():
    torch.manual_seed(0)
    model = small_vit("rope_axial", pool="mean", num_registers=2).eval()
    captured = {}
    model.norm.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    x = torch.randn(2, 3, 16, 16)
    feats = model.features(x)
    # Mean over the 16 patch tokens only, registers (the first 2 tokens) excluded.
    assert torch.allclose(feats, captured["x"][:, 2:].mean(1), atol=1e-6)
    cls = small_vit("rope_axial", pool="cls", num_registers=1).eval()
    captured.clear()
    cls.norm.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    assert torch.equal(cls.features(x), captured["x"][:, 0])


def test_positions_follow_the_convention_and_are_cached():
    model = small_vit("liere")  # default convention: the method's ("liere": linspace(0, n / n_train))
    assert model.convention == model.pe.default_convention == "liere"
    pos = model.positions((6, 6))
    ref = liere.positions.grid((6, 6), "liere", train_shape=(4, 4))
    assert torch.equal(pos, ref)
    assert pos[:, 0].max().item() == pytest.approx(1.5)
    assert model.positions((6, 6)) is pos  # cached, not rebuilt
    assert model.positions((4, 4)) is model.train_positions
    centers = small_vit("liere", convention="centers")
    assert torch.allclose(centers.positions((6, 6)), liere.positions.grid((6, 6), "centers"))


class CountingRotation:
    def __init__(self, pe):
        self.calls, self.inner = 0, pe.rotation

    def __call__(self, positions):
        self.calls += 1
        return self.inner(positions)


@pytest.mark.parametrize("method", ["liere", "rope_mixed", "spherical"])
@pytest.mark.parametrize("depth", [1, 4])
def test_rotation_computed_once_per_forward(method, depth):
    model = small_vit(method, depth=depth)
    counter = CountingRotation(model.pe)
    model.pe.rotation = counter
    model(torch.randn(2, 3, 16, 16)).sum().backward()
    assert counter.calls == 1
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 3, 24, 24))
    assert counter.calls == 2


@pytest.mark.parametrize("method", ["liere", "rope_mixed", "comrope_ld", "spherical"])
def test_every_layer_generators_get_gradient(method):
    """The official LieRE code only ever used layer 0's generators; here all L layers must train."""
    torch.manual_seed(1)
    depth = 4
    model = small_vit(method, depth=depth, share_layers=False)
    params = list(model.pe.parameters())
    assert params, "a learned method must have parameters"
    F.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 3])).backward()
    for p in params:
        assert p.shape[0] == depth  # one slice of generators per layer
        for layer in range(depth):
            assert p.grad[layer].abs().sum() > 0, f"{method}: layer {layer} generators got no gradient"


def test_shared_layers_have_one_generator_set():
    model = small_vit("liere", depth=4, share_layers=True)
    assert all(p.shape[0] == 1 for p in model.pe.parameters())
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 5)


def test_absolute_table_is_added_and_resized():
    model = small_vit("absolute", pool="cls")
    assert model.pe.additive and model.pe.grid_shape == (4, 4)
    with torch.no_grad():
        model.pe.table.zero_()
        base = model.eval()(torch.randn(2, 3, 16, 16))
        assert torch.isfinite(base).all()
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("kw,match", [
    (dict(input_shape=(30, 30)), "divisible"),
    (dict(pool="max"), "pool"),
    (dict(method="nope"), "unknown position encoding"),
    (dict(dim=30, num_heads=4), "divisible"),
])
def test_vit_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        small_vit(**kw) if "method" not in kw else small_vit(kw.pop("method"), **kw)


def test_vit_rejects_untileable_input():
    model = small_vit("rope_axial")
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        model(torch.randn(1, 3, 18, 16))


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size,expected", [("tiny", 22.0e6), ("base", 86.0e6), ("large", 304.0e6)])
def test_paper_sizes_parameter_counts(size, expected):
    """ImageNet ViTs at 224/16 with 1000 classes: 22M / 86M / 304M (DeiT-S / ViT-B / ViT-L)."""
    with torch.device("meta"):
        model = build_model("vit", size, "liere", input_shape=(224, 224), patch_size=16, num_classes=1000,
                            block_size=8)
    dim, depth, heads = SIZES[size]
    assert len(model.blocks) == depth and model.blocks[0].attn.num_heads == heads
    assert _count(model) == pytest.approx(expected, rel=0.03)


def test_lm_is_causal():
    torch.manual_seed(0)
    for method, kw in [("rope", {}), ("liere", {"block_size": 4}), ("absolute", {}), ("rope_mixed", {})]:
        lm = TextTransformer(vocab_size=50, context_length=16, dim=32, depth=2, num_heads=2, method=method, **kw)
        lm.eval()
        ids = torch.randint(0, 50, (2, 16))
        changed = ids.clone()
        changed[:, 10:] = (changed[:, 10:] + 7) % 50
        with torch.no_grad():
            a, b = lm(ids), lm(changed)
        assert torch.allclose(a[:, :10], b[:, :10], atol=1e-5), method
        assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3), method
        # A prefix gives the same logits whether or not more text follows (positions do not depend on T).
        with torch.no_grad():
            assert torch.allclose(lm(ids[:, :7]), a[:, :7], atol=1e-5), method
            assert lm(torch.randint(0, 50, (1, 40))).shape == (1, 40, 50)  # longer than the training context


def test_lm_loss_decreases():
    torch.manual_seed(0)
    lm = build_model("lm", "micro", "rope", vocab_size=32, context_length=32, dim=32, depth=2, num_heads=2)
    # A learnable sequence: a repeating pattern with period 5.
    base = torch.arange(33) % 5
    batch = torch.stack([torch.roll(base, -i) for i in range(8)])
    x, y = batch[:, :-1], batch[:, 1:]
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(lm(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 3.0 and losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("method", ["liere", "rope_mixed", "absolute", "rope_axial"])
def test_models_declare_their_undecayed_parameters(method):
    """no_weight_decay() names real parameters: the encoding's all, the prefix tokens, nothing else."""
    vit = small_vit(method, num_registers=2)
    names = dict(vit.named_parameters())
    skip = vit.no_weight_decay()
    assert skip <= set(names) and {"cls_token", "registers"} <= skip
    assert {n for n in names if n.startswith("pe.")} == {n for n in skip if n.startswith("pe.")}
    lm = TextTransformer(method=method if method != "rope_axial" else "rope", dim=16, depth=2, num_heads=2,
                         context_length=8, **({"block_size": 4} if method == "liere" else {}))
    assert lm.no_weight_decay() == {n for n, _ in lm.named_parameters() if n.startswith("pe.")}


def test_trainer_reads_no_weight_decay():
    from liere.train.module import LieRETask

    info = {"name": "toy", "kind": "image", "num_classes": 2, "in_chans": 3, "input_shape": (16, 16), "pos_dims": 2,
            "mean": (0.5,) * 3, "std": (0.5,) * 3, "default_augment": None}
    task = LieRETask({"method": "liere", "block_size": 4, "num_registers": 1}, info, steps_per_epoch=10)
    decay, no_decay = task.configure_optimizers()["optimizer"].param_groups
    undecayed = {id(p) for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0 and decay["weight_decay"] > 0
    for name, p in task.model.named_parameters():
        expected = p.ndim < 2 or name in task.model.no_weight_decay()
        assert (id(p) in undecayed) == expected, name

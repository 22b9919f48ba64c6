"""torch.compile: one graph, no breaks, eager-equal forward and backward, one compile per new image size at most.

Graph capture is checked with the cheap backends ("eager", "aot_eager": the
latter also traces the backward, through expm's custom autograd.Function);
inductor runs once, for LieRE's scaling-and-squaring path.
"""

import pytest
import torch
import torch._dynamo

from liere.models import build_model

from ._helpers import ALL, ROTARY


def vit(method: str, **options):
    torch.manual_seed(0)
    if method in ROTARY:
        options.setdefault("block_size", ROTARY[method])
    name = "liere" if method == "liere_ss" else method
    options.setdefault("depth", 2)
    return build_model("vit", "micro", name, input_shape=(16, 16), patch_size=4, num_classes=3, **options)


def counting_backend(calls: list):
    def backend(gm, example_inputs):
        calls.append(gm)
        return gm.forward

    return backend


def grads(model) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def compiled_and_eager(model, x, **compile_options):
    """Forward and backward once compiled (fullgraph) and once eager: (out, grads, eager out); the model's
    .grad holds the eager gradients afterwards."""
    out = torch.compile(model, fullgraph=True, **compile_options)(x)
    out.square().sum().backward()
    got = grads(model)
    model.zero_grad()
    ref = model(x)
    ref.square().sum().backward()
    return out, got, ref


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_explain_shows_one_graph_and_no_breaks(name, mode):
    model = vit(name).train(mode == "train")
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 16))
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    assert explanation.graph_count == 1


@pytest.mark.parametrize("name", ALL)
def test_fullgraph_forward_and_backward_match_eager(name):
    model = vit(name, pool="mean", num_registers=1)
    x = torch.randn(2, 3, 16, 16)
    out, got, ref = compiled_and_eager(model, x, backend="aot_eager")
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    assert len(got) == len(grads(model))
    for a, b in zip(got, grads(model)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["liere", "rope_mixed", "absolute"])
def test_image_size_change_recompiles_at_most_once_per_new_shape(name):
    model = vit(name)
    calls: list = []
    compiled = torch.compile(model, backend=counting_backend(calls), fullgraph=True)
    seen = set()
    for size in (16, 24, 16, 32, 24):
        before = len(calls)
        x = torch.randn(2, 3, size, size)
        out = compiled(x)
        out.sum().backward()
        torch.testing.assert_close(out, model(x), atol=1e-4, rtol=0)
        if size in seen:
            assert len(calls) == before, f"recompiled for an image size it had already compiled: {size}"
        else:
            assert len(calls) <= before + 1
        seen.add(size)
    assert 1 <= len(calls) <= len(seen)


def test_inductor_matches_eager_for_liere_scaling_and_squaring():
    """The real compiler once: LieRE with 8x8 blocks runs expm's static squaring loop and custom backward."""
    model = vit("liere_ss", depth=1)
    x = torch.randn(2, 3, 16, 16)
    out, got, ref = compiled_and_eager(model, x)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    for a, b in zip(got, grads(model)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_compiled_model_under_autocast_has_no_breaks():
    model = vit("liere")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 16))
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]


def test_compiled_liere_keeps_the_exponential_as_one_operator():
    """Issue 10: under torch.compile the exponential must not unroll the static 24 squarings into the graph
    (compiled LieRE-8 was 5x slower than eager); it is the opaque liere::skew_expm_ss_v2, whose body reads the
    squaring count from the data as eager mode does."""
    calls = []
    model = vit("liere_ss", depth=1)
    torch.compile(model, backend=counting_backend(calls), fullgraph=True)(torch.randn(2, 3, 16, 16))
    targets = [node.target for gm in calls for node in gm.graph.nodes if node.op == "call_function"]
    assert torch.ops.liere.skew_expm_ss_v2.default in targets
    assert sum(t in (torch.bmm, torch.matmul) for t in targets) < 5  # no squaring loop (>= 24 products)


@pytest.mark.parametrize("spread", ["one count", "counts 0 to 3"])
def test_compiled_exponential_keeps_its_schedule_and_matches_float64(spread):
    """The compiled operator packs what its backward needs, with the rows' squaring schedule: masked when
    all rows share a count (or two), sorted by count otherwise. Both against float64 matrix_exp."""
    from liere.ops.expm import skew_expm

    gen = torch.Generator().manual_seed(3)
    u = torch.randn(12, 8, 8, generator=gen, dtype=torch.float64)
    u = u - u.mT
    u = u / torch.linalg.matrix_norm(u, ord=2)[:, None, None]
    norms = torch.full((12,), 3.0) if spread == "one count" else 2.0 ** torch.linspace(-3, 3, 12)
    a = (u * norms[:, None, None].double()).float()
    g = torch.randn(12, 8, 8, generator=gen)
    x = a.clone().requires_grad_()
    out = torch.compile(lambda t: skew_expm(t), backend="aot_eager", fullgraph=True)(x)
    (grad,) = torch.autograd.grad(out, x, g)
    a64 = a.double().requires_grad_()
    ref = torch.linalg.matrix_exp(a64)
    (ref_grad,) = torch.autograd.grad(ref, a64, g.double())
    torch.testing.assert_close(out.double(), ref.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(grad.double(), ref_grad, atol=1e-4, rtol=1e-4)

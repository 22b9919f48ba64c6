"""torch.compile: one graph, no breaks, eager-equal forward and backward, one compile per new image size at most.

Graph capture is checked with the cheap backends ("eager", "aot_eager": the
latter also traces the backward, through expm's custom autograd.Function);
inductor runs once, for LieRE's scaling-and-squaring path.
"""

import pytest
import torch
import torch._dynamo

import liere

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


@pytest.mark.parametrize("kernels", ["on", "off"])
def test_compiled_liere_keeps_the_exponential_as_one_operator(kernels):
    """Issue 10: under torch.compile the exponential must not unroll the static 24 squarings into the graph
    (compiled LieRE-8 was 5x slower than eager); it is one opaque operator: the CPU kernel's where it is built
    (liere::cpu_skew_expm_v1), else liere::skew_expm_ss_v2, whose body reads the squaring count from the data
    as eager mode does."""
    from liere.ops import cpu_kernel

    if kernels == "on" and not cpu_kernel.available():
        pytest.skip(f"CPU kernels unavailable: {cpu_kernel.status()}")
    calls = []
    model = vit("liere_ss", depth=1)
    with cpu_kernel.enabled(kernels == "on"):
        torch.compile(model, backend=counting_backend(calls), fullgraph=True)(torch.randn(2, 3, 16, 16))
    targets = [node.target for gm in calls for node in gm.graph.nodes if node.op == "call_function"]
    expected = torch.ops.liere.cpu_skew_expm_v1 if kernels == "on" else torch.ops.liere.skew_expm_ss_v2
    assert expected.default in targets
    assert sum(t in (torch.bmm, torch.matmul) for t in targets) < 5  # no squaring loop (>= 24 products)


@pytest.mark.parametrize("name,block_size,layout", [("liere", 8, "bhnd"), ("liere", 16, "bnhd"),
                                                     ("comrope_ld", 4, "bnhd"), ("comrope_ap", 4, "bhnd"),
                                                     ("spherical", 3, "bhnd")])
def test_inductor_block_rotation_runs_the_cpu_kernel_and_matches_float64(name, block_size, layout):
    """Issue 10: compiled, the block rotation and its backward are the CPU kernel's custom operators (inductor's
    own code for the traceable broadcast product took ~30x the kernel's time), and the rotated q, k and the
    gradients of q, k and the generators match float64 (the dense matrix_exp oracle; the generators' gradient
    against float64 autograd through the eager traceable form)."""
    from oracle import random_positions

    from liere.ops import cpu_kernel
    from liere.ops.apply import _rotate_eager

    from ._helpers import build

    if not cpu_kernel.available():
        pytest.skip(f"CPU kernels unavailable: {cpu_kernel.status()}")
    pe = build(name, head_dim=16, num_heads=2, block_size=block_size)
    gen = torch.Generator().manual_seed(7)
    positions = random_positions(6, 2, scale=2.0, generator=gen)
    q, k, w = (torch.randn(3, 2, 6, 16, generator=gen) for _ in range(3))
    param_grads = _inductor_rotation_matches_oracle(pe, layout, positions, q, k, w,
                                                    torch.ops.liere.cpu_block_rotate_v1, atol=2e-5)
    pe64 = build(name, head_dim=16, num_heads=2, block_size=block_size).double()
    pe64.load_state_dict(pe.state_dict())
    rot = pe64.rotation(positions.double())
    ref = sum((_rotate_eager(t.double(), rot.layer(0), "bhnd") * w.double()).sum() for t in (q, k))
    ref_grads = torch.autograd.grad(ref, [p for p in pe64.parameters() if p.requires_grad])
    for a, b in zip(param_grads, ref_grads):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


def _inductor_rotation_matches_oracle(pe, layout, positions, q, k, w, op, atol):
    """Rotate q and k (B, H, N, D) by ``pe`` under inductor (in ``layout``), assert ``op`` is in its graphs, check
    the rotated q, k and the gradients of sum(w . (q' + k')) to q and k against the float64 matrix_exp oracle;
    return the gradients of the encoding's trainable parameters."""
    from ._helpers import oracle_with_prefix, rotate_dense

    def rotate(q, k, positions):
        qb, kb = (t.transpose(1, 2) for t in (q, k)) if layout == "bnhd" else (q, k)
        qr, kr = liere.apply_rotation_qk(qb, kb, pe.rotation(positions), layout=layout)
        return (qr.transpose(1, 2), kr.transpose(1, 2)) if layout == "bnhd" else (qr, kr)

    calls: list = []
    qx, kx = q.clone().requires_grad_(), k.clone().requires_grad_()
    qr, kr = torch.compile(rotate, backend=inductor_recording(calls), fullgraph=True)(qx, kx, positions)
    params = [p for p in pe.parameters() if p.requires_grad]
    got = torch.autograd.grad(((qr + kr) * w).sum(), [qx, kx, *params])
    assert op.default in called(calls)

    matrices = oracle_with_prefix(pe, positions)  # (H, N, D, D) float64
    torch.testing.assert_close(qr.double(), rotate_dense(matrices, q), atol=atol, rtol=0)
    torch.testing.assert_close(kr.double(), rotate_dense(matrices, k), atol=atol, rtol=0)
    expected = torch.einsum("hnji,bhnj->bhni", matrices, w.double())  # d/dq sum(w . R q) = R^T w, token by token
    torch.testing.assert_close(got[0].double(), expected, atol=atol, rtol=0)
    torch.testing.assert_close(got[1].double(), expected, atol=atol, rtol=0)
    return got[2:]


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


def inductor_recording(calls: list):
    """Inductor, keeping each graph it compiles in ``calls``."""
    def backend(gm, example_inputs):
        from torch._inductor.compile_fx import compile_fx

        calls.append(gm)
        return compile_fx(gm, example_inputs)

    return backend


def called(calls: list) -> set:
    return {node.target for gm in calls for node in gm.graph.nodes if node.op == "call_function"}


@pytest.mark.parametrize("name,layout", [("rope_mixed", "bhnd"), ("rope_axial", "bnhd"), ("rope_mixed", "bnhd")])
def test_inductor_planar_rotation_matches_float64(name, layout):
    """Inductor's planar rotation (on the CPU one custom operator, liere::planar_rotate_v1, running the complex
    multiply: inductor's own backward through it is wrong in torch 2.13, and its real form 3x slower), forward
    and the gradients of q, k and the frequencies, against the float64 oracle."""
    from oracle import random_positions

    from ._helpers import build, rotate_dense

    pe = build(name, head_dim=16, num_heads=2)
    gen = torch.Generator().manual_seed(5)
    positions = random_positions(6, 2, scale=3.0, generator=gen)
    q = torch.randn(3, 2, 6, 16, generator=gen)
    k = torch.randn(3, 2, 6, 16, generator=gen)
    w = torch.randn(3, 2, 6, 16, generator=gen)
    param_grads = _inductor_rotation_matches_oracle(pe, layout, positions, q, k, w,
                                                    torch.ops.liere.planar_rotate_v1, atol=1e-5)
    if not param_grads:  # rope_axial's frequencies are fixed
        return
    # The frequencies' gradient against float64 autograd through the eager real form of the same rotation.
    pe64 = build(name, head_dim=16, num_heads=2).double()
    pe64.load_state_dict(pe.state_dict())
    rot = pe64.rotation(positions.double())
    ref = sum((rotate_dense(_dense(rot, 2), t.double()) * w.double()).sum() for t in (q, k))
    ref_grads = torch.autograd.grad(ref, [p for p in pe64.parameters() if p.requires_grad])
    for a, b in zip(param_grads, ref_grads):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)


def _dense(rotation, heads: int) -> torch.Tensor:
    """(H, N, D, D) float64 matrices of a planar one-layer rotation, differentiable."""
    cos, sin = rotation.cos[0, 0], rotation.sin[0, 0]  # (Hp, N, M), Hp = 1 when the heads share it
    blocks = torch.stack((torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), -2)  # (Hp, N, M, 2, 2)
    blocks = blocks.expand(heads, *blocks.shape[1:])
    h, n, m, b, _ = blocks.shape
    out = blocks.new_zeros(h, n, m, b, m, b)
    for i in range(m):
        out[:, :, i, :, i, :] = blocks[:, :, i]
    return out.reshape(h, n, m * b, m * b)

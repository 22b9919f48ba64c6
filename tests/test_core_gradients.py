"""gradcheck in float64, and every learned parameter (of every layer) receives a gradient."""

import pytest
import torch

import liere
from oracle import LEARNED, ROTARY, make


@pytest.mark.parametrize("name", ROTARY)
def test_gradcheck_end_to_end_float64(name):
    pe = make(name, head_dim=8, num_heads=1, block_size=8 if name == "liere" else None).double()
    params = [p for p in pe.parameters()]
    pos = torch.randn(3, pe.pos_dims, dtype=torch.float64, requires_grad=True)
    q = torch.randn(1, 1, 3, 8, dtype=torch.float64, requires_grad=True)

    inputs = (q, pos, *[p.detach().clone().requires_grad_(True) for p in params])
    # Functional form: torch.func lets gradcheck differentiate w.r.t. the parameters directly.
    from torch.func import functional_call

    names = [n for n, _ in pe.named_parameters()]

    def g(q, pos, *ps):
        return functional_call(pe, dict(zip(names, ps)), (q, q, pos))[0]

    assert torch.autograd.gradcheck(g, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("block", [2, 3, 4, 5, 8])
def test_gradcheck_liere_block_sizes(block):
    pe = liere.build("liere", pos_dims=2, head_dim=8, num_heads=1, block_size=block, init_scale=0.5).double()
    from torch.func import functional_call

    pos = torch.randn(2, 2, dtype=torch.float64)
    q = torch.randn(1, 1, 2, 8, dtype=torch.float64)
    upper = pe.upper.detach().clone().requires_grad_(True)
    f = lambda u: functional_call(pe, {"upper": u}, (q, q, pos))[0]  # noqa: E731
    assert torch.autograd.gradcheck(f, (upper,), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", LEARNED)
def test_every_layer_gets_a_gradient(name):
    depth = 4
    pe = make(name, num_layers=depth)
    pos = torch.randn(5, pe.pos_dims)
    R = pe.rotation(pos)  # once, shared by all layers
    x = torch.randn(2, 2, 5, 16)
    loss = 0.0
    for layer in range(depth):
        q, k = pe(x, x.flip(-1), R, layer=layer)
        loss = loss + (q * k).sum() * (layer + 1)
    loss.backward()
    for pname, p in pe.named_parameters():
        assert p.grad is not None, pname
        assert p.shape[0] == depth
        per_layer = p.grad.flatten(1).abs().sum(1)
        assert torch.all(per_layer > 0), f"{pname}: layers without gradient: {(per_layer == 0).nonzero().flatten().tolist()}"


@pytest.mark.parametrize("name", LEARNED)
def test_layer_i_uses_its_own_generators(name):
    pe = make(name, num_layers=3)
    pos = torch.randn(4, pe.pos_dims)
    x = torch.randn(1, 2, 4, 16)
    before = [pe(x, x, pos, layer=i)[0].detach() for i in range(3)]
    with torch.no_grad():
        for p in pe.parameters():
            p[1].add_(0.1 * torch.randn_like(p[1]))
    after = [pe(x, x, pos, layer=i)[0].detach() for i in range(3)]
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert (before[1] - after[1]).abs().max() > 1e-4
    for i in range(3):
        ref = pe.rotation_matrix(pos, layer=i)
        torch.testing.assert_close(after[i], torch.einsum("hnij,bhnj->bhni", ref, x), atol=1e-5, rtol=0)

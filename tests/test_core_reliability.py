"""Issue 11 in the library: float options checked finite, the eval cache keyed on what the rotation depends on
(never serving a graph), and edge shapes and types (B = 0, integer q, lists, out-of-range indices, stray options)."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import liere
from liere.positions import with_prefix
from oracle import ROTARY, make

NON_FINITE = [math.nan, math.inf, -math.inf]
COVERED = list(ROTARY)
# (method, option) pairs whose value is a float a user may type.
FLOAT_OPTIONS = [("rope", "theta"), ("rope_axial", "theta"), ("rope_mixed", "theta"), ("spherical", "theta"),
                 ("comrope_ap", "init_std"), ("comrope_ld", "init_std"), ("liere", "init_scale"), ("string", "theta"),
                 ("string_circulant", "theta")]


# ----- 3. float options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,option", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_float_options_are_rejected_by_name(method, option, value):
    with pytest.raises(ValueError, match=rf"^{option}: expected a finite number"):
        make(method, **{option: value})


@pytest.mark.parametrize("method", ["rope", "rope_axial", "rope_mixed", "spherical"])
@pytest.mark.parametrize("value", [0.0, -10.0])
def test_theta_must_be_positive(method, value):
    with pytest.raises(ValueError, match=r"^theta: expected a positive number"):
        make(method, theta=value)


@pytest.mark.parametrize("method,option", FLOAT_OPTIONS)
def test_float_options_reject_non_numbers(method, option):
    with pytest.raises(ValueError, match=rf"^{option}: expected a number"):
        make(method, **{option: "big"})


@given(value=st.floats(allow_nan=False, allow_infinity=False, min_value=1e-3, max_value=1e6),
       idx=st.integers(0, len(FLOAT_OPTIONS) - 1))
def test_accepted_float_options_give_finite_rotations(value, idx):
    method, option = FLOAT_OPTIONS[idx]
    pe = make(method, **{option: value})
    pos = torch.rand(5, pe.pos_dims)
    q = torch.randn(1, 2, 5, 16)
    out = pe(q, q, pos)[0]
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("prefix", [[math.nan, 0.0], [0.0, math.inf], [-math.inf, 1.0]])
def test_prefix_position_must_be_finite(prefix):
    with pytest.raises(ValueError, match="prefix_position: contains NaN or inf"):
        make("liere", num_prefix_tokens=1, prefix_position=prefix)


def test_prefix_position_of_non_numbers():
    with pytest.raises(TypeError, match="prefix_position: expected numbers"):
        make("liere", num_prefix_tokens=1, prefix_position=["a", "b"])


# ----- 5. the eval cache -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ROTARY)
def test_cache_bypassed_for_positions_that_require_grad(method):
    pe = make(method).eval().requires_grad_(False)  # frozen encoding, learned coordinates upstream
    d = pe.pos_dims
    q = torch.randn(1, 2, 6, 16)
    for step in range(2):  # the second backward failed when the first graph was served from the cache
        pos = (torch.rand(6, d) * (step + 1)).requires_grad_(True)
        out = pe(q, q, pos)[0]
        out.pow(3).sum().backward()
        assert pos.grad is not None and torch.isfinite(pos.grad).all()
        want = torch.einsum("hnij,bhnj->bhni", pe.rotation_matrix(pos.detach()), q)
        torch.testing.assert_close(out.detach(), want, atol=2e-5, rtol=2e-5)
    assert len(pe._cache) == 0 or not any(r._data.requires_grad for r in pe._cache.values())


@pytest.mark.parametrize("method", ["liere", "rope_mixed"])
def test_cache_never_holds_a_graph(method):
    pe = make(method).eval()  # trainable parameters, grad enabled: every result carries a graph
    pos = torch.rand(6, 2)
    pe.rotation(pos)
    assert len(pe._cache) == 0
    with torch.no_grad():
        r = pe.rotation(pos)
    assert not r._data.requires_grad and len(pe._cache) == 1


def test_cache_serves_only_equal_positions():
    pe = make("liere").eval().requires_grad_(False)
    pos = torch.rand(6, 2)
    r1 = pe.rotation(pos)
    assert pe.rotation(pos.clone()) is r1
    nudged = pos.clone()
    nudged[3, 1] = torch.nextafter(nudged[3, 1], torch.tensor(2.0))  # one ulp: another key
    assert pe.rotation(nudged) is not r1
    assert pe.rotation(pos.view(2, 3, 2)) is not r1  # same values, other shape


def test_cache_keyed_on_inference_mode():
    pe = make("comrope_ld").eval().requires_grad_(False)
    pos = torch.rand(6, 2)
    with torch.inference_mode():
        pe.rotation(pos)
    q = torch.randn(1, 2, 6, 16, requires_grad=True)
    out = pe(q, q, pos)[0]  # an inference tensor here could not be saved for backward
    out.sum().backward()
    assert q.grad is not None


def test_cache_follows_prefix_position_change():
    pe = make("liere", num_prefix_tokens=1, prefix_position=[0.0, 0.0]).eval().requires_grad_(False)
    pos = torch.rand(4, 2)
    r1 = pe.rotation(pos)
    pe.prefix_position.fill_(3.0)  # an in-place change bumps the buffer's version
    r2 = pe.rotation(pos)
    assert r2 is not r1 and not torch.allclose(r1.blocks[:, :, :, 0], r2.blocks[:, :, :, 0])


# ----- 6. edge shapes and types ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", COVERED)
@pytest.mark.parametrize("layout", ["bhnd", "bnhd"])
def test_empty_batch(method, layout):
    pe = make(method, layout=layout)
    q = torch.randn(0, 2, 5, 16) if layout == "bhnd" else torch.randn(0, 5, 2, 16)
    q2, k2 = pe(q, q.clone(), torch.rand(5, pe.pos_dims))
    assert q2.shape == q.shape and k2.shape == q.shape and q2.dtype == q.dtype
    r = pe.rotation(torch.rand(5, pe.pos_dims))
    assert liere.apply_rotation(q, r, layout=layout).shape == q.shape


@pytest.mark.parametrize("method", COVERED)
def test_no_tokens(method):
    pe = make(method)
    q = torch.randn(2, 2, 0, 16)
    q2, _ = pe(q, q, torch.rand(0, pe.pos_dims))
    assert q2.shape == q.shape


@pytest.mark.parametrize("method", ROTARY)
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool])
def test_integer_q_is_a_type_error(method, dtype):
    pe = make(method)
    q = torch.ones(1, 2, 5, 16, dtype=dtype)
    with pytest.raises(TypeError, match=r"q: expected a floating-point tensor"):
        pe(q, q, torch.rand(5, pe.pos_dims))
    with pytest.raises(TypeError, match=r"x: expected a floating-point tensor"):
        liere.apply_rotation(q, pe.rotation(torch.rand(5, pe.pos_dims)))


def test_k_is_checked_too():
    pe = make("liere")
    q = torch.randn(1, 2, 5, 16)
    with pytest.raises(TypeError, match="k: expected a floating-point tensor"):
        pe(q, q.long(), torch.rand(5, 2))
    with pytest.raises(TypeError, match="k: expected a torch.Tensor, got list"):
        pe(q, q.tolist(), torch.rand(5, 2))


@pytest.mark.parametrize("method", ["liere", "rope_axial"])
def test_integer_positions_are_used_as_floats(method):
    pe = make(method)
    q = torch.randn(1, 2, 5, 16)
    pos = torch.arange(10).view(5, 2)
    torch.testing.assert_close(pe(q, q, pos)[0], pe(q, q, pos.float())[0])


def test_apply_rotation_on_a_list_names_the_argument():
    pe = make("liere")
    r = pe.rotation(torch.rand(5, 2))
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got list"):
        liere.apply_rotation(torch.randn(1, 2, 5, 16).tolist(), r)
    with pytest.raises(TypeError, match="rotation: expected a liere.Rotation"):
        liere.apply_rotation(torch.randn(1, 2, 5, 16), [r])


@pytest.mark.parametrize("index", [5, -6, 100])
def test_rotation_tokens_out_of_range(index):
    r = make("liere").rotation(torch.rand(5, 2))
    with pytest.raises(IndexError, match=rf"Rotation.tokens: index {index} out of range for 5 tokens"):
        r.tokens(index)


def test_rotation_tokens_index_tensor_out_of_range():
    r = make("rope_axial").rotation(torch.rand(5, 2))
    with pytest.raises(IndexError, match=r"Rotation.tokens: index values must lie in \[-5, 5\)"):
        r.tokens(torch.tensor([0, 7]))
    with pytest.raises(IndexError, match=r"Rotation.tokens"):
        r.tokens(torch.tensor([[0, 1], [2, 9]]))
    with pytest.raises(TypeError, match="Rotation.tokens: expected an integer index tensor"):
        r.tokens(torch.tensor([0.0, 1.0]))
    assert r.tokens(-1).num_tokens == 1 and r.tokens(torch.tensor([4, 0])).num_tokens == 2


@given(n=st.integers(1, 8), index=st.integers(-20, 20))
def test_rotation_tokens_int_property(n, index):
    r = make("liere").rotation(torch.rand(n, 2))
    if -n <= index < n:
        torch.testing.assert_close(r.tokens(index).blocks, r.blocks[:, :, :, [index % n]])
    else:
        with pytest.raises(IndexError, match="Rotation.tokens"):
            r.tokens(index)


@pytest.mark.parametrize("count", [-1, 1.5, True, "2"])
def test_with_prefix_bad_count(count):
    with pytest.raises(ValueError, match="num_prefix_tokens: expected an integer >= 0"):
        with_prefix(torch.rand(4, 2), count)


def test_with_prefix_bad_value_and_positions():
    with pytest.raises(ValueError, match="value: expected a number"):
        with_prefix(torch.rand(4, 2), 2, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="positions: expected a tensor"):
        with_prefix([[0.0, 0.0]], 1)
    assert with_prefix(torch.rand(3, 4, 2), 2).shape == (3, 6, 2)


@pytest.mark.parametrize("name", ["absolute", "none"])
@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_absolute_and_none_check_sizes(name, bad):
    grid = {"grid_shape": (4, 4)} if name == "absolute" else {}
    with pytest.raises(ValueError, match="num_heads: expected an integer"):
        liere.build(name, pos_dims=2, head_dim=8, num_heads=bad, **grid)
    with pytest.raises(ValueError, match="head_dim: expected an integer"):
        liere.build(name, pos_dims=2, head_dim=bad, num_heads=2, **grid)


@pytest.mark.parametrize("name", ["absolute", "none"])
def test_absolute_and_none_reject_misspelled_options(name):
    grid = {"grid_shape": (4, 4)} if name == "absolute" else {}
    with pytest.raises(TypeError, match="kindd: .* takes no option 'kindd'"):
        liere.build(name, pos_dims=2, head_dim=8, num_heads=2, kindd="sincos", **grid)
    with pytest.raises(ValueError, match="block_size: .* has no rotation blocks"):
        liere.build(name, pos_dims=2, head_dim=8, num_heads=2, block_size=4, **grid)
    if name == "none":
        with pytest.raises(TypeError, match="grid_shape: 'none' takes no option"):
            liere.build(name, pos_dims=2, head_dim=8, num_heads=2, grid_shape=(4, 4))
    # The options every model passes uniformly are still accepted.
    liere.build(name, pos_dims=2, head_dim=8, num_heads=2, num_layers=3, share_layers=True,
                share_heads=False, num_prefix_tokens=1, layout="bhnd", cache=True, **grid)


# ----- 7. precision after model.to(bfloat16) / .half() --------------------------------------------------------------
@pytest.mark.parametrize("method", COVERED)
@pytest.mark.parametrize("dtype,atol", [(torch.bfloat16, 0.05), (torch.float16, 0.01)])
@pytest.mark.parametrize("scale", [1.0, 1e2, 1e4])
def test_half_module_keeps_fixed_frequencies_fp32(method, dtype, atol, scale):
    import copy

    pe = make(method, num_prefix_tokens=1, prefix_position=[0.25] * (1 if method == "rope" else 2))
    half = copy.deepcopy(pe).to(dtype) if dtype == torch.bfloat16 else copy.deepcopy(pe).half()
    for name, buf in half.named_buffers():
        if buf.is_floating_point():
            assert buf.dtype == torch.float32, name
    # The reference: the same (rounded) learned values, in float32 throughout.
    ref_pe = copy.deepcopy(half).float()
    pos = torch.rand(7, pe.pos_dims) * scale
    q = torch.randn(2, 2, 8, 16).to(dtype)
    with torch.no_grad():
        out = half(q, q, pos)[0]
        ref = ref_pe(q.float(), q.float(), pos)[0]
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=0)


@pytest.mark.parametrize("method", ["rope", "rope_axial", "visionllama", "spherical", "comrope_ap"])
def test_double_still_converts_fixed_buffers(method):
    pe = make(method).double()
    for name, buf in pe.named_buffers():
        if buf.is_floating_point():
            assert buf.dtype == torch.float64, name
    assert pe.rotation(torch.rand(3, pe.pos_dims).double())._data.dtype == torch.float64


# ----- 8. meta-device init -----------------------------------------------------------------------------------------
def _build_for_meta(method):
    if method == "absolute_sincos":
        return liere.build("absolute", pos_dims=2, head_dim=8, num_heads=2, grid_shape=(4, 4), kind="sincos",
                           num_prefix_tokens=1)
    return make(method, num_prefix_tokens=1, prefix_position=[0.5] * (1 if method == "rope" else 2))


@pytest.mark.parametrize("method", [*COVERED, "absolute_sincos"])
def test_meta_device_round_trip(method):
    pe = _build_for_meta(method)
    with torch.device("meta"):
        lazy = _build_for_meta(method)
    assert all(p.device.type == "meta" for p in lazy.parameters())
    lazy = lazy.to_empty(device="cpu")
    lazy.load_state_dict(pe.state_dict())
    for (name, a), (_, b) in zip(pe.named_buffers(), lazy.named_buffers()):
        torch.testing.assert_close(b, a, msg=name)
    if method == "absolute_sincos":
        x = torch.randn(2, 17, 16)
        torch.testing.assert_close(lazy(x), pe(x))
        return
    pos = torch.rand(5, pe.pos_dims) * 10
    q = torch.randn(1, 2, 6, 16)
    with torch.no_grad():
        torch.testing.assert_close(lazy(q, q, pos)[0], pe(q, q, pos)[0])


@pytest.mark.parametrize("method", ["rope_axial", "spherical"])
def test_init_non_persistent_buffers_restores_overwritten_buffers(method):
    pe = make(method)
    want = {n: b.clone() for n, b in pe.named_buffers()}
    for b in pe.buffers():
        b.zero_()
    pe.init_non_persistent_buffers()
    for n, b in pe.named_buffers():
        torch.testing.assert_close(b, want[n], msg=n)

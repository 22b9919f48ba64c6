"""The registry: each method's facts are its class attributes, and build, help and configs derive from them."""

import inspect

import pytest

import liere
from liere.encodings import factory, registry


def _own_keywords(cls) -> set[str]:
    """Keyword arguments of the method's own __init__s, up to the shared base."""
    names = set()
    for klass in cls.__mro__:
        if klass in (liere.RotaryEncoding, liere.PositionEncoding) or "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    return names


@pytest.mark.parametrize("name", [n for n, c in liere.METHODS.items() if c.rotary])
def test_declared_options_are_the_rotary_constructors_own_keywords(name):
    assert set(liere.METHODS[name].options) == _own_keywords(liere.METHODS[name])


def test_declared_options_of_absolute_are_accepted():
    assert set(liere.METHODS["absolute"].options) <= _own_keywords(liere.METHODS["absolute"])


def test_names_and_aliases_come_from_the_classes():
    assert all(cls.name == name for name, cls in liere.METHODS.items())
    assert liere.ALIASES == {"rope_vit": "rope_axial"}
    assert liere.build is factory.build and liere.encodings.build is factory.build
    assert registry.canonical_name("RoPE-ViT") == "rope_axial"
    with pytest.raises(ValueError, match="known methods: " + ", ".join([*liere.METHODS, *liere.ALIASES])):
        registry.canonical_name("nope")


@pytest.mark.parametrize("name", registry.rotary_methods())
def test_block_size_defaults_and_fixed_sizes(name):
    cls = liere.METHODS[name]
    pos_dims = 1 if name == "rope" else 2
    pe = liere.build(name, pos_dims=pos_dims, head_dim=12, num_heads=1)
    assert pe.block_size == cls.block_size_for(12) == (cls.fixed_block_size or cls.default_block_size or 12)
    if cls.fixed_block_size is not None:
        with pytest.raises(ValueError, match="block_size"):
            liere.build(name, pos_dims=pos_dims, head_dim=12, num_heads=1, block_size=4 if cls.fixed_block_size != 4
                        else 6)


def test_liere_dense_forces_the_dense_block():
    assert liere.build("liere_dense", pos_dims=2, head_dim=16, num_heads=2).block_size == 16
    assert liere.build("liere_dense", pos_dims=2, head_dim=16, num_heads=2, block_size=16).block_size == 16
    with pytest.raises(ValueError, match="block_size: 'liere_dense' uses one head_dim x head_dim block"):
        liere.build("liere_dense", pos_dims=2, head_dim=16, num_heads=2, block_size=8)
    assert liere.build("liere", pos_dims=2, head_dim=16, num_heads=2, block_size=8).block_size == 8


def test_every_encoding_has_both_hooks():
    import torch

    x = torch.randn(2, 4, 8)
    for name, cls in liere.METHODS.items():
        extra = {"grid_shape": (2, 2)} if "grid_shape" in cls.options else {}
        pe = liere.build(name, pos_dims=1 if name == "rope" else 2, head_dim=4, num_heads=2, **extra)
        pos = torch.rand(4, pe.pos_dims)
        assert (pe.rotation(pos) is not None) == cls.rotary, name
        assert (pe.embed(x, (2, 2)) is x) == (not cls.additive), name

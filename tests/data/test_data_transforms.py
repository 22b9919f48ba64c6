"""Kornia batch augmentations and normalisation helpers."""

import pytest
import torch

from liere.data.transforms import (
    AUGMENTATIONS,
    CIFAR10_MEAN,
    CIFAR10_STD,
    Normalize,
    build_train_augmentation,
    denormalize,
    normalize,
)


def batch(b=16, c=3, s=32, seed=0):
    return torch.rand(b, c, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_shapes_dtype_range(name):
    torch.manual_seed(0)
    aug = build_train_augmentation(name, 32)
    x = batch()
    out = aug(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5
    if name == "none":
        assert torch.equal(out, x)


def test_crop_with_padding_moves_content():
    torch.manual_seed(0)
    aug = build_train_augmentation("crop", 32)
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 14:18, 14:18] = 1.0  # a bright square in the middle
    out = aug(x)
    assert out.shape == x.shape
    rows = (out[:, 0].sum(2) > 0.5).float().argmax(1)
    cols = (out[:, 0].sum(1) > 0.5).float().argmax(1)
    # Shifts are in [-4, 4] and vary across the batch; content is kept, not rescaled.
    assert ((rows - 14).abs() <= 4).all() and ((cols - 14).abs() <= 4).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5
    assert torch.allclose(out.sum((1, 2, 3)), torch.full((64,), 16.0))


def test_flip_mirrors_some_images():
    torch.manual_seed(1)
    aug = build_train_augmentation("flip", 8)
    x = batch(64, 3, 8)
    out = aug(x)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert (flipped | kept).all() and 10 < flipped.sum() < 54


def test_randaugment_runs_and_changes_images():
    torch.manual_seed(0)
    aug = build_train_augmentation({"randaugment": {"n": 2, "m": 14}}, 32)
    x = batch(32)
    out = aug(x)
    assert out.shape == x.shape and not torch.allclose(out, x)
    grey = build_train_augmentation("randaugment", 32)(batch(8, 1))
    assert grey.shape == (8, 1, 32, 32)


def test_video_crop_flip_same_on_every_frame():
    torch.manual_seed(0)
    aug = build_train_augmentation("crop_flip", 16, video=True)
    frame = torch.rand(4, 3, 1, 16, 16)
    clip = frame.expand(-1, -1, 5, -1, -1).contiguous()  # a still video
    out = aug(clip)
    assert out.shape == clip.shape
    assert torch.allclose(out, out[:, :, :1].expand_as(out))  # every frame got the same transform
    with pytest.raises(NotImplementedError):
        build_train_augmentation("randaugment", 16, video=True)


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="known"):
        build_train_augmentation("mixup", 32)
    with pytest.raises(ValueError, match="blur"):
        build_train_augmentation({"blur": True}, 32)


@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (2, 3, 5, 8, 8)])
def test_normalize_roundtrip(shape):
    x = torch.rand(shape)
    y = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    assert torch.allclose(y[:, 1], (x[:, 1] - CIFAR10_MEAN[1]) / CIFAR10_STD[1])
    assert torch.allclose(denormalize(y, CIFAR10_MEAN, CIFAR10_STD), x, atol=1e-6)
    assert torch.allclose(Normalize(CIFAR10_MEAN, CIFAR10_STD)(x), y)

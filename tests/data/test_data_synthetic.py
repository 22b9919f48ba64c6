"""The 2-D pointing task: labels match geometry, rendering matches the scene, determinism, splits."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.data.synthetic import ARROW_RGB, BLOCK, TARGET_RGB, PointingDataset


def ray_hits_disc(scene) -> bool:
    """Independent check: solve |tip + t*d - c|^2 = r^2 for some t >= 0."""
    d = np.array([math.cos(scene["angle"]), math.sin(scene["angle"])])
    tip = np.array([scene["ax"], scene["ay"]]) + 0.5 * scene["length"] * d
    v = tip - np.array([scene["tx"], scene["ty"]])
    b, c = v @ d, v @ v - scene["radius"] ** 2
    disc = b * b - c
    return bool(disc >= 0 and -b + math.sqrt(disc) >= 0)


def pixel(img, x, y):
    """The pixel of a (C, S, S) image containing scene point (x, y)."""
    s = img.shape[-1]
    return img[:, min(int(y * s), s - 1), min(int(x * s), s - 1)]


@pytest.fixture(scope="module")
def train32():
    return PointingDataset(1200, 32, seed=0, split="train")


def test_labels_match_independent_geometry(train32):
    labels = []
    for i in range(len(train32)):
        s = train32.scene(i)
        assert ray_hits_disc(s) == bool(s["label"]), (i, s)
        assert train32[i][1].item() == s["label"]
        labels.append(s["label"])
    assert set(labels) == {0, 1}


def test_classes_balanced(train32):
    _, y = train32.tensors()
    assert y.dtype == torch.int64 and y.shape == (1200,)
    assert abs(y.float().mean().item() - 0.5) < 0.02


def test_positions_carry_no_label_information(train32):
    # Position and size are drawn before the label; only the direction depends on it.
    scenes = [train32.scene(i) for i in range(len(train32))]
    for key in ("radius", "length"):
        hit = np.mean([s[key] for s in scenes if s["label"] == 1])
        miss = np.mean([s[key] for s in scenes if s["label"] == 0])
        assert abs(hit - miss) < 0.05 * miss, key
    dist = lambda s: math.hypot(s["tx"] - s["ax"], s["ty"] - s["ay"])  # noqa: E731
    hit = np.mean([dist(s) for s in scenes if s["label"] == 1])
    miss = np.mean([dist(s) for s in scenes if s["label"] == 0])
    assert abs(hit - miss) < 0.03


def test_target_far_from_arrow_and_inside_frame(train32):
    for i in range(200):
        s = train32.scene(i)
        gap = math.hypot(s["tx"] - s["ax"], s["ty"] - s["ay"]) - s["length"] / 2 - s["radius"]
        assert gap >= train32.min_gap - 1e-9
        for c in (s["tx"] - s["radius"], s["tx"] + s["radius"], s["ty"] - s["radius"], s["ty"] + s["radius"]):
            assert 0 < c < 1


def test_image_format(train32):
    x, y = train32[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == torch.int64 and y.shape == ()


def test_rendering_matches_scene_parameters():
    ds = PointingDataset(40, 96, seed=3)
    for i in range(len(ds)):
        s, (x, _) = ds.scene(i), ds[i]
        # Target colour at the target's centre (checks x/y orientation, too).
        assert torch.allclose(pixel(x, s["tx"], s["ty"]), torch.tensor(TARGET_RGB), atol=0.01)
        d = np.array([math.cos(s["angle"]), math.sin(s["angle"])])
        n = np.array([-d[1], d[0]])
        tail = np.array([s["ax"], s["ay"]]) - 0.5 * s["length"] * d
        L = s["length"]
        shaft = tail + 0.3 * L * d
        beside_head = tail + 0.65 * L * d + 0.15 * L * n  # inside the wide head
        beside_shaft = tail + 0.2 * L * d + 0.15 * L * n  # outside the thin shaft
        assert torch.allclose(pixel(x, *shaft), torch.tensor(ARROW_RGB), atol=0.05)
        assert pixel(x, *beside_head).min() > 0.5, i
        assert pixel(x, *beside_shaft).max() < 0.5, i
        assert x[:, 0, :].max() < 0.5 and x[:, -1, :].max() < 0.5  # border stays empty


def test_deterministic_and_independent_of_num_samples():
    a = PointingDataset(BLOCK + 50, 32, seed=7)
    b = PointingDataset(BLOCK + 400, 32, seed=7)
    for i in (0, 17, BLOCK + 3, BLOCK + 49):
        assert torch.equal(a[i][0], b[i][0]) and a.scene(i) == b.scene(i)
    c = PointingDataset(BLOCK + 50, 32, seed=8)
    assert not torch.equal(a[0][0], c[0][0])


def test_splits_are_disjoint():
    keys = {}
    for split in ("train", "val", "test"):
        ds = PointingDataset(600, 32, seed=0, split=split)
        keys[split] = {(round(ds.scene(i)["ax"], 9), round(ds.scene(i)["ay"], 9)) for i in range(len(ds))}
        assert len(keys[split]) == 600
    assert not keys["train"] & keys["val"]
    assert not keys["train"] & keys["test"]
    assert not keys["val"] & keys["test"]
    with pytest.raises(ValueError, match="split"):
        PointingDataset(10, 32, split="training")


def test_resolutions_render_the_same_scene():
    lo = PointingDataset(64, 32, seed=1, split="val")
    hi = PointingDataset(64, 64, seed=1, split="val")
    mid = PointingDataset(64, 48, seed=1, split="val")
    x_lo, y_lo = lo.tensors()
    x_hi, y_hi = hi.tensors()
    assert torch.equal(y_lo, y_hi) and lo.scene(5) == hi.scene(5) == mid.scene(5)
    assert mid[5][0].shape == (3, 48, 48)
    pooled = F.avg_pool2d(x_hi.float() / 255, 2)
    err = (pooled - x_lo.float() / 255).abs()
    assert err.mean() < 0.01 and err.max() < 0.5
    # ...while a different scene is far away.
    assert (pooled[1:] - x_lo[:-1].float() / 255).abs().mean() > 5 * err.mean()


def test_greyscale_and_distractors():
    ds = PointingDataset(100, 48, seed=2, channels=1, num_distractors=2)
    x, y = ds[0]
    assert x.shape == (1, 48, 48)
    s = ds.scene(0)
    assert {"d0x", "d1y", "d1r"} <= set(s)
    assert abs(pixel(x, s["d0x"], s["d0y"]).item() - 0.35) < 0.01
    assert abs(pixel(x, s["tx"], s["ty"]).item() - 0.65) < 0.01
    for i in range(len(ds)):
        assert ray_hits_disc(ds.scene(i)) == bool(ds.scene(i)["label"])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), index=st.integers(0, 3 * BLOCK))
def test_any_seed_and_index_is_consistent(seed, index):
    ds = PointingDataset(index + 1, 32, seed=seed, split="test")
    s = ds.scene(index)
    assert ray_hits_disc(s) == bool(s["label"])
    x, y = ds[index]
    assert y.item() == s["label"]
    assert torch.allclose(pixel(x, s["tx"], s["ty"]), torch.tensor(TARGET_RGB), atol=0.02)


def test_generation_is_fast():
    import time

    t = time.perf_counter()
    x, _ = PointingDataset(10_000, 32, seed=0).tensors()
    assert x.shape == (10_000, 3, 32, 32)
    # "Well under a few seconds"; generous for loaded CI machines.
    assert time.perf_counter() - t < 10

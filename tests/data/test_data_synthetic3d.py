"""The 3-D moving-disc task: motion matches the label, one frame is uninformative, time reversal."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from liere.data.synthetic3d import MovingDataset


def circular_centroid(frame: torch.Tensor) -> np.ndarray:
    """Centre of mass of a (H, W) frame on the torus, in scene units (x, y)."""
    h, w = frame.shape
    out = []
    for axis, n in ((1, w), (0, h)):
        mass = frame.sum(dim=1 - axis).double()
        phase = torch.exp(2j * math.pi * (torch.arange(n, dtype=torch.float64) + 0.5) / n)
        out.append((np.angle((mass * phase).sum().item()) / (2 * math.pi)) % 1.0)
    return np.array(out)


def wrap(v):
    return (v + 0.5) % 1.0 - 0.5


@pytest.fixture(scope="module")
def clips():
    return MovingDataset(800, 32, num_frames=8, seed=0, num_directions=8)


def test_shapes_and_balance(clips):
    x, y = clips[0]
    assert x.shape == (3, 8, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() <= 1
    _, ys = clips.tensors()
    counts = torch.bincount(ys, minlength=8)
    assert len(counts) == 8 and (counts - 100).abs().max() <= 15  # exact within each 512-clip block
    _, first_block = MovingDataset(512, 8, 2, seed=0).tensors()
    assert torch.bincount(first_block).tolist() == [64] * 8


def test_motion_matches_label(clips):
    for i in range(100):
        x, y = clips[i]
        frames = x.mean(0)
        step = wrap(circular_centroid(frames[-1]) - circular_centroid(frames[0]))
        angle = math.atan2(step[1], step[0])
        expected = 2 * math.pi * y.item() / 8
        err = abs((angle - expected + math.pi) % (2 * math.pi) - math.pi)
        assert err < 0.15, (i, y.item(), angle)
        s = clips.scene(i)
        assert abs(np.hypot(*step) - math.hypot(s["vx"], s["vy"])) < 0.03


def test_single_frame_carries_no_label_information():
    ds = MovingDataset(2000, 16, num_frames=4, seed=1, num_directions=4)
    x, y = ds.tensors()
    first = x[:, :, 0].float().mean(1) / 255  # (N, H, W)
    means = torch.stack([first[y == k].mean(0) for k in range(4)])
    # Start positions are uniform on the torus for every class: per-class mean
    # first frames agree up to sampling noise...
    spread = (means - means.mean(0)).abs().mean()
    # ...whereas the mean *motion* (last minus first frame) differs by class.
    last = x[:, :, -1].float().mean(1) / 255
    start_x = torch.tensor([circular_centroid(f)[0] for f in first[:400]])
    end_x = torch.tensor([circular_centroid(f)[0] for f in last[:400]])
    dx = torch.tensor(wrap((end_x - start_x).numpy()))
    assert spread < 0.01
    assert dx[y[:400] == 0].mean() > 0.2 and dx[y[:400] == 2].mean() < -0.2
    sx = torch.tensor([ds.scene(i)["x0"] for i in range(2000)])
    for k in range(4):
        assert abs(sx[y == k].mean().item() - 0.5) < 0.05


def test_time_reversal_flips_direction(clips):
    for i in range(40):
        x, y = clips[i]
        rev = x.flip(1).mean(0)
        step = wrap(circular_centroid(rev[-1]) - circular_centroid(rev[0]))
        angle = math.atan2(step[1], step[0])
        flipped = (y.item() + 4) % 8
        err = abs((angle - 2 * math.pi * flipped / 8 + math.pi) % (2 * math.pi) - math.pi)
        assert err < 0.15


def test_deterministic_and_splits_disjoint():
    a = MovingDataset(50, 16, 4, seed=3)
    b = MovingDataset(600, 16, 4, seed=3)
    assert torch.equal(a[10][0], b[10][0]) and a.scene(10) == b.scene(10)
    v = MovingDataset(50, 16, 4, seed=3, split="val")
    tr = {round(a.scene(i)["x0"], 9) for i in range(50)}
    assert not tr & {round(v.scene(i)["x0"], 9) for i in range(50)}


def test_any_resolution_same_motion():
    lo = MovingDataset(10, 16, 4, seed=5)
    hi = MovingDataset(10, 32, 12, seed=5)
    assert hi[3][0].shape == (3, 12, 32, 32)
    # Same clip: the first and last frames show the same instants.
    for f_lo, f_hi in ((0, 0), (-1, -1)):
        c_lo = circular_centroid(lo[3][0].mean(0)[f_lo])
        c_hi = circular_centroid(hi[3][0].mean(0)[f_hi])
        assert np.abs(wrap(c_lo - c_hi)).max() < 0.02


def test_bad_arguments():
    with pytest.raises(ValueError):
        MovingDataset(10, num_directions=5)
    with pytest.raises(ValueError):
        MovingDataset(10, split="nope")


@settings(max_examples=10, deadline=None)
@given(t=st.integers(1, 6), size=st.integers(8, 24), k=st.sampled_from([2, 4, 8]))
def test_any_shape(t, size, k):
    ds = MovingDataset(5, size, t, num_directions=k, channels=1)
    x, y = ds[4]
    assert x.shape == (1, t, size, size) and 0 <= y.item() < k

"""Procedural 3-D (time x height x width) task: which way is the disc moving?

A clip shows one disc moving in a straight line at constant speed in one of
``num_directions`` directions; the label is the direction index ``k``, the
velocity angle being ``2*pi*k/num_directions`` (0 = +x, i.e. rightwards; with
y pointing down, ``k = num_directions/4`` is downwards).

Like the 2-D task, a clip is defined in continuous coordinates -- space
``[0, 1)^2`` and time ``[0, 1]`` -- and rasterised at any ``(T, H, W)``:
frame ``f`` shows time ``f / (T - 1)``. The speed is the distance travelled over
the whole clip, so different ``T`` sample the same motion more or less finely.

Why the time axis matters:

* the space is a **torus** (the disc wraps around the edges), so the start
  position is uniform whatever the direction -- **a single frame carries no
  information about the label**;
* reversing time gives an equally likely clip of the opposite direction,
  label ``(k + num_directions/2) % num_directions``, so a model must know the
  order of frames, not just which frames are present.

Label-preserving augmentations: colour operations, and translations (on the
torus any shift keeps the clip valid). Flips and rotations change the
direction and so the label; the default augmentation is none.

Clips are float32 ``(C, T, H, W)`` in ``[0, 1]``; generation is lazy, vectorised
by blocks, deterministic by ``(seed, split, index)`` and cached as uint8, as in
:mod:`liere.data.synthetic`.
"""

from __future__ import annotations

import math

import numpy as np

from ._common import block_rng
from .synthetic import BlockDataset, balanced_labels, coverage, pixel_grid

_SALT_MOVING = 2


def torus_delta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest signed difference a - b on the unit circle."""
    return np.remainder(a - b + 0.5, 1.0) - 0.5


class MovingDataset(BlockDataset):
    """Clips of a disc moving in one of ``num_directions`` directions; see the module docstring.

    Args:
        num_samples: number of clips.
        image_size: frame height and width.
        num_frames: T.
        seed, split: select the random stream; splits are disjoint.
        num_directions: number of classes (even, so time reversal maps classes to classes).
        channels: 1 or 3 (the disc's colour is random, so colour never reveals the label).
        speed: (low, high) distance travelled over the clip, scene units.
        radius: (low, high) disc radius, scene units.
    """

    def __init__(
        self,
        num_samples: int = 4000,
        image_size: int = 32,
        num_frames: int = 8,
        seed: int = 0,
        split: str = "train",
        num_directions: int = 8,
        channels: int = 3,
        speed: tuple[float, float] = (0.25, 0.45),
        radius: tuple[float, float] = (0.08, 0.12),
    ):
        super().__init__(num_samples)
        if num_directions < 2 or num_directions % 2:
            raise ValueError("num_directions must be even and >= 2")
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        self.image_size, self.num_frames = int(image_size), int(num_frames)
        self.seed, self.split = int(seed), split
        self.num_classes = self.num_directions = int(num_directions)
        self.channels = channels
        self.speed, self.radius = tuple(speed), tuple(radius)
        self.classes = tuple(f"{round(360 * k / num_directions)}deg" for k in range(num_directions))
        block_rng(seed, split, 0, _SALT_MOVING)  # validate the split early

    def _sample_block(self, block: int) -> dict[str, np.ndarray]:
        rng = block_rng(self.seed, self.split, block, _SALT_MOVING)
        n = self.block_size
        label = balanced_labels(rng, n, self.num_directions)
        angle = 2 * math.pi * label / self.num_directions
        speed = rng.uniform(*self.speed, n)
        return dict(
            label=label,
            x0=rng.uniform(0, 1, n),
            y0=rng.uniform(0, 1, n),
            vx=speed * np.cos(angle),
            vy=speed * np.sin(angle),
            radius=rng.uniform(*self.radius, n),
            colour=rng.uniform(0.4, 1.0, (n, self.channels)),
        )

    def frame_times(self) -> np.ndarray:
        """The clip times shown by the frames: evenly spaced over [0, 1]."""
        return np.linspace(0.0, 1.0, self.num_frames) if self.num_frames > 1 else np.zeros(1)

    def _render(self, p: dict[str, np.ndarray]) -> np.ndarray:
        s = self.image_size
        px, py = pixel_grid(s)
        f = lambda k: np.asarray(p[k], dtype=np.float32)[:, None, None, None]  # noqa: E731 -- (B,1,1,1)
        t = self.frame_times().astype(np.float32)[None, :, None, None]
        cx = np.remainder(f("x0") + f("vx") * t, 1.0)  # (B, T, 1, 1)
        cy = np.remainder(f("y0") + f("vy") * t, 1.0)
        sdf = np.hypot(torus_delta(px, cx), torus_delta(py, cy)) - f("radius")
        cov = coverage(sdf, s)  # (B, T, H, W)
        colour = np.asarray(p["colour"], dtype=np.float32)
        return cov[:, None] * colour[:, :, None, None, None]

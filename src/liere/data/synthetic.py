"""Procedural 2-D spatial-reasoning task: does the arrow point at the target?

Each scene lives in continuous coordinates ``[0, 1]^2`` (x to the right, y
downwards, as in image row/column order) and is rasterised with one pixel of
antialiasing at whatever resolution is asked for. Object sizes are fractions of
the scene, so **objects scale with the image**: item ``i`` rendered at 32x32,
48x48 or 64x64 is the same scene, and a 64x64 rendering average-pooled 2x2 is
close to the 32x32 one. This is what resolution-generalisation tests of a
patch-based ViT need: a model trained at 32x32 sees the same distribution of
scenes, just with more patches, at 64x64.

A scene holds

* an **arrow**: a shaft plus a triangular head, centre ``(ax, ay)``, direction
  ``angle`` (radians, 0 = +x, pi/2 = +y i.e. downwards), length ``length``;
* a **target** disc, centre ``(tx, ty)``, radius ``radius``;
* optionally ``num_distractors`` discs of another colour, which do not count.

The label is 1 when the ray leaving the arrow's tip along its direction passes
within ``radius`` of the target's centre (hits the disc), else 0. A scene is
drawn in two steps:

1. positions and sizes, independent of the label: the arrow's bounding circle
   is inside the frame and at least ``min_gap`` from the target's rim (so the
   answer needs information from patches that are far apart -- position
   encodings matter), distractors do not overlap anything;
2. the arrow's direction given the label (balanced exactly within each block):
   a hit points within ``asin((r - margin) / d)`` of the direction to the
   target (``d`` = centre distance); a miss points further than
   ``asin((r + margin) / d) + miss_angle`` from it -- a fraction ``near_miss``
   of misses just past that limit, the rest anywhere. ``miss_angle`` and
   ``near_miss`` set the difficulty: the defaults (0.35 rad, 0) ask for the
   arrow's direction to within about 20 degrees.

Because positions and sizes do not depend on the label, no single object
reveals the class: only the relation between the arrow's direction and the
target's relative position does. ``margin`` keeps every label unambiguous.

Label-preserving augmentations: any transform applied to the whole image that
maps lines to lines keeps the label -- horizontal/vertical flips, translations
(random crop with padding, as long as nothing leaves the frame), rotations,
shears and all colour operations. Crops and large RandAugment translations can
push an object out of the frame, so the default augmentation is flip only.

Images are float32 ``(C, H, W)`` in ``[0, 1]``; ``C`` is 3 (arrow white, target
orange, distractors blue) or 1 (grey levels 1.0, 0.65, 0.35).

Generation is lazy and vectorised by blocks of ``BLOCK`` items: block ``b`` of
split ``s`` and seed ``seed`` uses its own random stream, so item ``i`` is the
same scene whatever ``num_samples`` is, and different splits never share a scene.
Rendered blocks are cached in memory as uint8.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._common import block_rng

BLOCK = 512
_SALT_POINTING = 1

ARROW_RGB = (1.0, 1.0, 1.0)
TARGET_RGB = (1.0, 0.55, 0.1)
DISTRACTOR_RGB = (0.25, 0.45, 1.0)
GREY = {"arrow": 1.0, "target": 0.65, "distractor": 0.35}


class BlockDataset(torch.utils.data.Dataset):
    """Base for synthetic datasets generated lazily block by block and cached as uint8."""

    block_size = BLOCK

    def __init__(self, num_samples: int):
        if num_samples < 0:
            raise ValueError("num_samples must be >= 0")
        self.num_samples = int(num_samples)
        self._params: dict[int, dict[str, np.ndarray]] = {}
        self._images: dict[int, torch.Tensor] = {}

    # Subclasses implement these two.
    def _sample_block(self, block: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _render(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """Float images in [0, 1], (B, C, ...) -- NumPy, which is single-threaded and so
        does not slow down when other processes load the CPU the way OpenMP ops do."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_samples

    def _block_params(self, block: int) -> dict[str, np.ndarray]:
        if block not in self._params:
            self._params[block] = self._sample_block(block)
        return self._params[block]

    def _block_images(self, block: int) -> torch.Tensor:
        if block not in self._images:
            # Render only the items this dataset has; the rest of the block's
            # scenes exist (so item contents do not depend on num_samples) but
            # are never drawn.
            n = min(self.block_size, self.num_samples - block * self.block_size)
            params = {k: v[:n] for k, v in self._block_params(block).items()}
            imgs = np.zeros((0,), dtype=np.uint8)
            chunks = [self._render({k: v[s : s + 128] for k, v in params.items()}) for s in range(0, n, 128)]
            if chunks:
                imgs = np.concatenate([np.rint(c * 255.0).astype(np.uint8) for c in chunks])
            self._images[block] = torch.from_numpy(imgs)
        return self._images[block]

    def _check(self, i: int) -> int:
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"index {i} out of range for {self.num_samples} items")
        return i

    def scene(self, i: int) -> dict[str, Any]:
        """The parameters of item ``i`` (plain Python floats/ints), including ``label``."""
        i = self._check(i)
        p = self._block_params(i // self.block_size)
        j = i % self.block_size
        return {k: (v[j].tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()}

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._check(int(i))
        b, j = divmod(i, self.block_size)
        x = self._block_images(b)[j].float().div_(255.0)
        y = torch.tensor(int(self._block_params(b)["label"][j]), dtype=torch.int64)
        return x, y

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All items at once: (uint8 images, int64 labels). Divide by 255 for floats.

        Handy for training small models from memory (or on a GPU) without a DataLoader.
        """
        nb = -(-self.num_samples // self.block_size)
        xs = torch.from_numpy(np.concatenate([self._block_images(b).numpy() for b in range(nb)])) if nb \
            else torch.empty(0, dtype=torch.uint8)
        ys = np.concatenate([self._block_params(b)["label"] for b in range(nb)])[: self.num_samples] if nb else []
        return xs, torch.as_tensor(np.asarray(ys), dtype=torch.int64)


def balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """A random order of ``n`` labels with every class equally often (up to n % num_classes)."""
    return rng.permutation(np.arange(n) % num_classes)


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) in scene units, each (size, size) float32."""
    u = (np.arange(size, dtype=np.float32) + 0.5) / size
    return u[None, :].repeat(size, 0), u[:, None].repeat(size, 1)


def coverage(sdf: np.ndarray, size: int) -> np.ndarray:
    """Antialiased coverage from a signed distance in scene units (one-pixel ramp)."""
    return np.clip(0.5 - sdf * size, 0.0, 1.0, out=sdf)


def _col(v) -> np.ndarray:
    # (B,) parameters broadcast against (B, H, W) pixel arrays.
    return np.asarray(v, dtype=np.float32)[:, None, None]


def arrow_sdf(px: np.ndarray, py: np.ndarray, ax, ay, angle, length) -> np.ndarray:
    """Signed distance to B arrows; ``px``/``py`` are (H, W), parameters (B,); result (B, H, W).

    The shaft is a box from the tail to the head's base; the head is a
    triangle whose distance is the max of its edges' half-plane distances
    (exact near the edges, which is all antialiasing needs). The head is
    0.4 of the length long and 0.5 wide, the shaft 0.14 wide.
    """
    length = np.asarray(length, dtype=np.float64)
    head, half_w, shaft_w = 0.4 * length, 0.25 * length, 0.07 * length
    dx, dy = np.cos(angle), np.sin(angle)
    qx = px[None] - _col(ax - 0.5 * length * dx)
    qy = py[None] - _col(ay - 0.5 * length * dy)
    along = qx * _col(dx) + qy * _col(dy)  # 0 at the tail, length at the tip
    perp = np.abs(qy * _col(dx) - qx * _col(dy))
    half_len = _col(0.5 * (length - head))
    ex = np.abs(along - half_len) - half_len
    ey = perp - _col(shaft_w)
    shaft = np.hypot(np.maximum(ex, 0), np.maximum(ey, 0)) + np.minimum(np.maximum(ex, ey), 0)
    norm = np.hypot(half_w, head)
    side = (along - _col(length)) * _col(half_w / norm) + perp * _col(head / norm)
    base = _col(length - head) - along
    return np.minimum(shaft, np.maximum(side, base))


def disc_sdf(px: np.ndarray, py: np.ndarray, cx, cy, r) -> np.ndarray:
    """Signed distance to B discs, (B, H, W)."""
    return np.hypot(px[None] - _col(cx), py[None] - _col(cy)) - _col(r)


class PointingDataset(BlockDataset):
    """Binary "does the arrow point at the target disc" images; see the module docstring.

    Args:
        num_samples: number of items.
        image_size: output resolution (square).
        seed, split: select the random stream; splits are disjoint.
        channels: 1 or 3.
        num_distractors: extra discs of another colour that never count.
        arrow_length, radius: (low, high) ranges in scene units.
        min_gap: minimum distance between the arrow (any direction) and the target's rim.
        margin: no ray passes within this distance of the target's rim.
        miss_angle: misses point at least this many radians past grazing the
            target; lower it (to 0) for a harder task needing finer angles.
        near_miss: fraction of misses that point just past that limit (within
            0.3 rad of it); the rest point anywhere else.
    """

    num_classes = 2
    classes = ("miss", "hit")

    def __init__(
        self,
        num_samples: int = 8000,
        image_size: int = 32,
        seed: int = 0,
        split: str = "train",
        channels: int = 3,
        num_distractors: int = 0,
        arrow_length: tuple[float, float] = (0.24, 0.32),
        radius: tuple[float, float] = (0.06, 0.09),
        min_gap: float = 0.12,
        margin: float = 0.015,
        miss_angle: float = 0.35,
        near_miss: float = 0.0,
    ):
        super().__init__(num_samples)
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        self.image_size = int(image_size)
        self.seed, self.split, self.channels = int(seed), split, channels
        self.num_distractors = int(num_distractors)
        self.arrow_length, self.radius = tuple(arrow_length), tuple(radius)
        self.min_gap, self.margin = float(min_gap), float(margin)
        self.miss_angle, self.near_miss = float(miss_angle), float(near_miss)
        block_rng(seed, split, 0, _SALT_POINTING)  # validate the split early

    def _positions(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Candidate arrow/target/distractor placements; valid for every arrow direction."""
        m = 0.02  # keep a small border so antialiased edges stay in the frame
        length = rng.uniform(*self.arrow_length, n)
        # The arrow's bounding circle (radius length/2) stays inside the frame
        # and away from the other objects, so any direction can be chosen later.
        ax = rng.uniform(length / 2 + m, 1 - length / 2 - m)
        ay = rng.uniform(length / 2 + m, 1 - length / 2 - m)
        r = rng.uniform(*self.radius, n)
        tx, ty = rng.uniform(r + m, 1 - r - m), rng.uniform(r + m, 1 - r - m)
        ok = np.hypot(tx - ax, ty - ay) >= length / 2 + r + self.min_gap
        c = dict(ax=ax, ay=ay, length=length, tx=tx, ty=ty, radius=r)
        for k in range(self.num_distractors):
            dr = rng.uniform(*self.radius, n)
            dx, dy = rng.uniform(dr + m, 1 - dr - m), rng.uniform(dr + m, 1 - dr - m)
            ok &= np.hypot(dx - ax, dy - ay) >= length / 2 + dr + 0.04
            ok &= np.hypot(dx - tx, dy - ty) >= dr + r + 0.04
            for j in range(k):
                ok &= np.hypot(dx - c[f"d{j}x"], dy - c[f"d{j}y"]) >= dr + c[f"d{j}r"] + 0.04
            c.update({f"d{k}x": dx, f"d{k}y": dy, f"d{k}r": dr})
        return {key: val[ok] for key, val in c.items()}

    def _sample_block(self, block: int) -> dict[str, np.ndarray]:
        rng = block_rng(self.seed, self.split, block, _SALT_POINTING)
        n = self.block_size
        label = balanced_labels(rng, n, 2)
        pools, have = [], 0
        while have < n:
            pools.append(self._positions(rng, 2 * n))
            have += len(pools[-1]["ax"])
        out = {k: np.concatenate([p[k] for p in pools])[:n] for k in pools[0]}
        # The direction is chosen last, given the label: the ray from the tip
        # hits the disc iff the angle between the arrow and the direction to
        # the target's centre is below asin(r / distance) (the target is
        # further than length/2 + r, so it is always ahead of the tip then).
        dist = np.hypot(out["tx"] - out["ax"], out["ty"] - out["ay"])
        to_target = np.arctan2(out["ty"] - out["ay"], out["tx"] - out["ax"])
        hit_half = np.arcsin((out["radius"] - self.margin) / dist)
        graze = np.arcsin(np.minimum(1.0, (out["radius"] + self.margin) / dist))
        miss_half = np.minimum(graze + self.miss_angle, np.pi - 0.3)
        u, sign = rng.uniform(0, 1, n), rng.choice([-1.0, 1.0], n)
        near = rng.uniform(0, 1, n) < self.near_miss
        miss_far = miss_half + u * (np.pi - miss_half)
        miss_near = miss_half + u * np.minimum(np.pi - miss_half, 0.3)
        offset = np.where(label == 1, u * hit_half, np.where(near, miss_near, miss_far))
        out["angle"] = np.angle(np.exp(1j * (to_target + sign * offset)))  # wrap to (-pi, pi]
        out["label"] = label.astype(np.int64)
        return out

    def _render(self, p: dict[str, np.ndarray]) -> np.ndarray:
        s = self.image_size
        px, py = pixel_grid(s)
        layers = [
            ("arrow", coverage(arrow_sdf(px, py, p["ax"], p["ay"], p["angle"], p["length"]), s)),
            ("target", coverage(disc_sdf(px, py, p["tx"], p["ty"], p["radius"]), s)),
        ]
        for k in range(self.num_distractors):
            layers.append(("distractor", coverage(disc_sdf(px, py, p[f"d{k}x"], p[f"d{k}y"], p[f"d{k}r"]), s)))
        rgb = {"arrow": ARROW_RGB, "target": TARGET_RGB, "distractor": DISTRACTOR_RGB}
        img = np.zeros((len(p["ax"]), self.channels, s, s), dtype=np.float32)
        for name, cov in layers:
            col = np.asarray(rgb[name] if self.channels == 3 else (GREY[name],), dtype=np.float32)
            # Objects never overlap, so a max composites them exactly.
            np.maximum(img, cov[:, None] * col[None, :, None, None], out=img)
        return img

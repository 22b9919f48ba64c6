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
within ``radius`` of the target's centre (hits the disc), else 0. Scenes are
rejection-sampled so that

* the two classes are exactly balanced within each generation block;
* the target is at least ``min_gap`` away from the arrow, so the answer needs
  information from patches that are far apart -- position encodings matter;
* no ray passes within ``margin`` of the disc's rim, so every label is
  unambiguous at 32x32;
* nothing overlaps and everything stays inside the frame.

Positives are drawn from the exact conditional distribution of uniformly
placed scenes, so nothing but the geometry separates the classes.

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

import math
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

    def _render(self, params: dict[str, np.ndarray]) -> torch.Tensor:
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
            chunks = [self._render({k: v[s : s + 128] for k, v in params.items()}) for s in range(0, n, 128)]
            imgs = torch.cat(chunks) if chunks else torch.empty(0)
            self._images[block] = (imgs * 255.0).round_().to(torch.uint8)
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
        xs = torch.cat([self._block_images(b) for b in range(nb)]) if nb else torch.empty(0, dtype=torch.uint8)
        ys = np.concatenate([self._block_params(b)["label"] for b in range(nb)])[: self.num_samples] if nb else []
        return xs, torch.as_tensor(np.asarray(ys), dtype=torch.int64)


def balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """A random order of ``n`` labels with every class equally often (up to n % num_classes)."""
    return rng.permutation(np.arange(n) % num_classes)


def pixel_grid(size: int) -> torch.Tensor:
    """Pixel centres in scene coordinates, shape (size, size, 2) holding (x, y)."""
    u = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def coverage(sdf: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased coverage from a signed distance in scene units (one-pixel ramp)."""
    return (0.5 - sdf * size).clamp_(0.0, 1.0)


def arrow_geometry(length):
    """Head length, head half-width and shaft half-width of an arrow (scene units)."""
    length = np.asarray(length, dtype=np.float64)
    return 0.4 * length, 0.25 * length, 0.07 * length


def arrow_sdf(px: torch.Tensor, py: torch.Tensor, ax, ay, angle, length) -> torch.Tensor:
    """Signed distance to the arrows (batched over the leading dim of the parameters).

    ``px``/``py`` are (H, W) pixel coordinates; parameters are 1-D tensors of
    length B; the result is (B, H, W). The head is a triangle whose distance is
    the max over its edges' half-plane distances (exact near edges, which is
    all antialiasing needs).
    """
    head, half_w, shaft_w = (torch.as_tensor(v, dtype=torch.float32) for v in arrow_geometry(length))
    ax, ay, angle, length = (torch.as_tensor(v, dtype=torch.float32) for v in (ax, ay, angle, length))
    v = lambda t: t[:, None, None]  # noqa: E731 -- broadcast (B,) over (H, W)
    dx, dy = torch.cos(angle), torch.sin(angle)
    qx = px[None] - v(ax - 0.5 * length * dx)
    qy = py[None] - v(ay - 0.5 * length * dy)
    along = qx * v(dx) + qy * v(dy)  # coordinate along the arrow, 0 at the tail
    perp = -qx * v(dy) + qy * v(dx)
    # Shaft: a box from the tail to the base of the head.
    half_len = v(0.5 * (length - head))
    ex = (along - half_len).abs() - half_len
    ey = perp.abs() - v(shaft_w)
    shaft = torch.hypot(ex.clamp(min=0), ey.clamp(min=0)) + torch.maximum(ex, ey).clamp(max=0)
    # Head: triangle with base at along = length - head and tip at along = length.
    norm = torch.hypot(half_w, head)
    side = (along - v(length)) * v(half_w / norm) + perp.abs() * v(head / norm)
    base = v(length - head) - along
    return torch.minimum(shaft, torch.maximum(side, base))


def disc_sdf(px: torch.Tensor, py: torch.Tensor, cx, cy, r) -> torch.Tensor:
    cx, cy, r = (torch.as_tensor(t, dtype=torch.float32)[:, None, None] for t in (cx, cy, r))
    return torch.hypot(px[None] - cx, py[None] - cy) - r


def ray_hits_disc(tip_x, tip_y, angle, cx, cy, r) -> tuple[np.ndarray, np.ndarray]:
    """(hit, clearance) for rays from the tip; clearance = |distance of the ray to the centre - r|."""
    dx, dy = np.cos(angle), np.sin(angle)
    vx, vy = cx - tip_x, cy - tip_y
    ahead = vx * dx + vy * dy
    # For targets behind the tip the ray's closest point is the tip itself.
    dist = np.where(ahead > 0, np.abs(vx * dy - vy * dx), np.hypot(vx, vy))
    return dist < r, np.abs(dist - r)


def point_segment_distance(px, py, x0, y0, x1, y1) -> np.ndarray:
    sx, sy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * sx + (py - y0) * sy) / (sx * sx + sy * sy), 0.0, 1.0)
    return np.hypot(px - (x0 + t * sx), py - (y0 + t * sy))


class PointingDataset(BlockDataset):
    """Binary "does the arrow point at the target disc" images; see the module docstring.

    Args:
        num_samples: number of items.
        image_size: output resolution (square).
        seed, split: select the random stream; splits are disjoint.
        channels: 1 or 3.
        num_distractors: extra discs of another colour that never count.
        arrow_length, radius: (low, high) ranges in scene units.
        min_gap: minimum distance between the arrow and the target's rim.
        margin: rays passing within this of the rim are rejected.
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
    ):
        super().__init__(num_samples)
        if channels not in (1, 3):
            raise ValueError("channels must be 1 or 3")
        self.image_size = int(image_size)
        self.seed, self.split, self.channels = int(seed), split, channels
        self.num_distractors = int(num_distractors)
        self.arrow_length, self.radius = tuple(arrow_length), tuple(radius)
        self.min_gap, self.margin = float(min_gap), float(margin)
        block_rng(seed, split, 0, _SALT_POINTING)  # validate the split early

    def _candidates(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        m = 0.02  # keep a small border so antialiased edges stay in the frame
        length = rng.uniform(*self.arrow_length, n)
        angle = rng.uniform(-math.pi, math.pi, n)
        # The bounding circle of the arrow (radius length/2) stays inside the frame.
        ax = rng.uniform(length / 2 + m, 1 - length / 2 - m)
        ay = rng.uniform(length / 2 + m, 1 - length / 2 - m)
        r = rng.uniform(*self.radius, n)
        tx, ty = rng.uniform(r + m, 1 - r - m), rng.uniform(r + m, 1 - r - m)
        half = 0.5 * length
        tip_x, tip_y = ax + half * np.cos(angle), ay + half * np.sin(angle)
        tail_x, tail_y = ax - half * np.cos(angle), ay - half * np.sin(angle)
        hit, clearance = ray_hits_disc(tip_x, tip_y, angle, tx, ty, r)
        gap = point_segment_distance(tx, ty, tail_x, tail_y, tip_x, tip_y) - r
        ok = (gap >= self.min_gap) & (clearance >= self.margin)
        c = dict(ax=ax, ay=ay, angle=angle, length=length, tx=tx, ty=ty, radius=r, label=hit.astype(np.int64))
        for k in range(self.num_distractors):
            dr = rng.uniform(*self.radius, n)
            dx, dy = rng.uniform(dr + m, 1 - dr - m), rng.uniform(dr + m, 1 - dr - m)
            ok &= point_segment_distance(dx, dy, tail_x, tail_y, tip_x, tip_y) - dr >= 0.04
            ok &= np.hypot(dx - tx, dy - ty) >= dr + r + 0.04
            for j in range(k):
                ok &= np.hypot(dx - c[f"d{j}x"], dy - c[f"d{j}y"]) >= dr + c[f"d{j}r"] + 0.04
            c.update({f"d{k}x": dx, f"d{k}y": dy, f"d{k}r": dr})
        return {key: val[ok] for key, val in c.items()}

    def _sample_block(self, block: int) -> dict[str, np.ndarray]:
        rng = block_rng(self.seed, self.split, block, _SALT_POINTING)
        labels = balanced_labels(rng, self.block_size, 2)
        need = np.bincount(labels, minlength=2)
        pools: list[dict[str, np.ndarray]] = []
        have = np.zeros(2, dtype=np.int64)
        # Hits are a few percent of uniform scenes; draw candidates until both
        # classes have enough, then assign them in draw order.
        while (have < need).any():
            cand = self._candidates(rng, 16 * self.block_size)
            pools.append(cand)
            have += np.bincount(cand["label"], minlength=2)
        pool = {k: np.concatenate([p[k] for p in pools]) for k in pools[0]}
        out = {k: np.empty(self.block_size, dtype=v.dtype) for k, v in pool.items()}
        for cls in (0, 1):
            src = np.flatnonzero(pool["label"] == cls)[: need[cls]]
            dst = np.flatnonzero(labels == cls)
            for k in out:
                out[k][dst] = pool[k][src]
        return out

    def _render(self, p: dict[str, np.ndarray]) -> torch.Tensor:
        s = self.image_size
        grid = pixel_grid(s)
        px, py = grid[..., 0], grid[..., 1]
        layers = [
            ("arrow", coverage(arrow_sdf(px, py, p["ax"], p["ay"], p["angle"], p["length"]), s)),
            ("target", coverage(disc_sdf(px, py, p["tx"], p["ty"], p["radius"]), s)),
        ]
        for k in range(self.num_distractors):
            layers.append(("distractor", coverage(disc_sdf(px, py, p[f"d{k}x"], p[f"d{k}y"], p[f"d{k}r"]), s)))
        rgb = {"arrow": ARROW_RGB, "target": TARGET_RGB, "distractor": DISTRACTOR_RGB}
        img = torch.zeros(len(p["ax"]), self.channels, s, s)
        for name, cov in layers:
            col = torch.tensor(rgb[name] if self.channels == 3 else (GREY[name],))
            # Objects never overlap, so a max composites them exactly.
            img = torch.maximum(img, cov[:, None] * col[None, :, None, None])
        return img

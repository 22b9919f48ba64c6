"""Batch augmentations (kornia) and normalisation, as in the LieRE training recipe.

The recipe for CIFAR is random crop with 4 pixels of zero padding, random
horizontal flip and RandAugment with ``n=2`` operations at magnitude ``m=14``
(kornia's scale: 0-30). Kornia works on whole batches on any device, so the
augmentation can run on the GPU after the batch has been moved there.

Which augmentations keep the label (see each dataset's module docstring):

============  ==========================================================
dataset       label-preserving augmentations
============  ==========================================================
cifar*/images all of the recipe ("randaugment"; default)
pointing      flips and colour ops; crops/translations only while nothing
              leaves the frame; default "flip"
moving        colour ops and translations; NOT flips or rotations (they
              change the direction); default none
text          none
============  ==========================================================

Named augmentations: ``"none"``, ``"flip"``, ``"crop"``, ``"crop_flip"``,
``"randaugment"`` (= ``"liere"``: crop + flip + RandAugment). A dict may set
``crop_padding`` (int or None), ``flip`` (bool) and ``randaugment``
(None, True, or ``{"n": 2, "m": 14}``) directly.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD

__all__ = [
    "AUGMENTATIONS", "build_train_augmentation", "Normalize", "normalize", "denormalize",
    "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD",
]

AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "none": dict(crop_padding=None, flip=False, randaugment=None),
    "flip": dict(crop_padding=None, flip=True, randaugment=None),
    "crop": dict(crop_padding=4, flip=False, randaugment=None),
    "crop_flip": dict(crop_padding=4, flip=True, randaugment=None),
    "randaugment": dict(crop_padding=4, flip=True, randaugment=dict(n=2, m=14)),
}
AUGMENTATIONS["liere"] = AUGMENTATIONS["randaugment"]


class _ThreeChannels(nn.Module):
    """Run an RGB-only kornia op on greyscale batches by repeating and averaging channels."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 3:
            return self.op(x)
        if x.shape[1] == 1:
            return self.op(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
        raise ValueError(f"RandAugment needs 1 or 3 channels, got {x.shape[1]}")


def _resolve(name_or_config) -> dict[str, Any]:
    if name_or_config is None:
        return dict(AUGMENTATIONS["none"])
    if isinstance(name_or_config, str):
        key = name_or_config.lower()
        if key not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name_or_config!r}; known: {sorted(AUGMENTATIONS)}")
        return dict(AUGMENTATIONS[key])
    if isinstance(name_or_config, Mapping):
        unknown = set(name_or_config) - set(AUGMENTATIONS["none"])
        if unknown:
            raise ValueError(f"unknown augmentation options {sorted(unknown)}")
        return {**AUGMENTATIONS["none"], **name_or_config}
    raise TypeError(f"augmentation must be a name, a dict or None, got {type(name_or_config).__name__}")


def build_train_augmentation(name_or_config, image_size: int | Sequence[int], video: bool = False) -> nn.Module:
    """An ``nn.Module`` augmenting a float batch in [0, 1].

    Images are (B, C, H, W). With ``video=True`` batches are (B, C, T, H, W) and
    every frame of a clip gets the same crop and flip (RandAugment is not
    supported for video). ``image_size`` is the crop size (H, W).
    """
    import kornia.augmentation as K
    from kornia.augmentation.auto import RandAugment

    cfg = _resolve(name_or_config)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)[-2:]
    ops: list[nn.Module] = []
    if cfg["crop_padding"]:
        ops.append(K.RandomCrop(size, padding=int(cfg["crop_padding"])))
    if cfg["flip"]:
        ops.append(K.RandomHorizontalFlip())
    ra = cfg["randaugment"]
    if ra:
        if video:
            raise NotImplementedError("RandAugment is not supported for video batches")
        ra = dict(n=2, m=14) if ra is True else dict(ra)
        ops.append(_ThreeChannels(RandAugment(n=int(ra["n"]), m=int(ra["m"]))))
    if not ops:
        return nn.Identity()
    if video:
        return K.VideoSequential(*ops, data_format="BCTHW", same_on_frame=True)
    return nn.Sequential(*ops)


def _stats(t, x: torch.Tensor) -> torch.Tensor:
    # Broadcast per-channel stats over dim 1 of (B, C, ...) batches.
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(1, -1, *([1] * (x.ndim - 2)))


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel, for batches (B, C, ...) of any rank."""
    return (x - _stats(mean, x)) / _stats(std, x)


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Inverse of :func:`normalize`."""
    return x * _stats(std, x) + _stats(mean, x)


class Normalize(nn.Module):
    """:func:`normalize` as a module (works for images, videos and volumes)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std)

"""Token positions: grids under named conventions, prefix tokens, resolution changes.

How a grid of n patches maps to coordinates decides what a model sees when the
resolution changes, so the convention is always explicit:

=========  ================================  ==========================================
name       coordinate of patch i (of n)      at a new resolution n (trained at n_train)
=========  ================================  ==========================================
liere      linspace(0, n / n_train, n)[i]     spacing kept ~1/n_train, range grows (LieRE code)
centers    (i + 0.5) / n                      range kept at [0, 1], spacing shrinks (ComRoPE)
index      i                                  spacing 1, range grows (RoPE-ViT, 1-D RoPE)
=========  ================================  ==========================================

A model trained on one grid and run on another can also ignore its convention's
rule and choose how positions *scale* (``grid(..., scaling=...)``), the question
the resolution studies ask. Along an axis with training coordinates
c_t(i) = c_t(0) + i * s (spacing s, n_train patches):

=========  =====================================  ================================
scaling    coordinate of patch i (of n)           meaning
=========  =====================================  ================================
extend     c_t(0) + i * s                         same spacing, range grows (RoPE-ViT)
rescale    c_t(0) + s * ((i + 0.5) n_train/n - 0.5)  same span of patch centres (ComRoPE)
=========  =====================================  ================================

Grids are flattened in row-major order over ``shape`` (the order of
``x.flatten(2)`` after a patch-embedding convolution), one coordinate per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._compat import tracing

__all__ = ["CONVENTIONS", "SCALINGS", "grid", "train_spacing", "axis_coordinates", "with_prefix", "check_positions"]

CONVENTIONS = ("liere", "centers", "index")
#: "convention" follows the convention's own rule at a new size; the others override it (see above).
SCALINGS = ("convention", "extend", "rescale")


def axis_coordinates(
    n: int, convention: str = "liere", n_train: int | None = None, *, device=None, dtype=torch.float32
) -> Tensor:
    """Coordinates of n patches along one axis."""
    if not isinstance(n, (int, torch.SymInt)) or isinstance(n, bool) or n < 1:  # SymInt: a symbolic grid (export)
        raise ValueError(f"n: expected a positive number of patches, got {n!r}")
    if convention == "liere":
        n_train = n if n_train is None else n_train
        if n_train < 1:
            raise ValueError(f"train_shape: expected positive sizes, got {n_train}")
        # i / (n - 1) at the training size, as linspace(0, 1, n) in the LieRE code; stretched by n / n_train
        # elsewhere. Not linspace itself: it rounds some coordinates an ulp away from i / (n - 1) (4/7 and 5/7 of an
        # 8-grid), where this rounds each once (at the training size) and every step scales by 2 exactly, so
        # p_2i = 2 p_i: the rotations at multiples of other positions are then products (liere.ops.multiples).
        if isinstance(n, torch.SymInt):  # a symbolic grid (export): the same arithmetic on its symbolic size
            return torch.arange(n, device=device, dtype=torch.float32).mul(n / n_train).div(
                torch.sym_max(n - 1, 1)).to(dtype)
        return torch.arange(n, device=device, dtype=dtype).mul(n / n_train).div(max(n - 1, 1))
    if convention == "centers":
        return (torch.arange(n, device=device, dtype=dtype) + 0.5) / n
    if convention == "index":
        return torch.arange(n, device=device, dtype=dtype)
    raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")


def train_spacing(n_train: int, convention: str = "liere") -> tuple[float, float]:
    """(first coordinate, spacing) of the training grid along one axis of ``n_train`` patches."""
    coords = axis_coordinates(n_train, convention, n_train, device="cpu", dtype=torch.float64)
    spacing = float(coords[1] - coords[0]) if n_train > 1 else 1.0
    return float(coords[0]), spacing


def _scaled_axis(n: int, n_train: int, convention: str, scaling: str, device, dtype) -> Tensor:
    first, spacing = train_spacing(n_train, convention)
    i = torch.arange(n, device=device, dtype=torch.float64)
    if scaling == "extend":
        coords = first + i * spacing
    else:  # rescale: patch centres keep the training grid's span
        coords = first + spacing * ((i + 0.5) * n_train / n - 0.5)
    return coords.to(dtype)


def grid(
    shape: Sequence[int] | int,
    convention: str = "liere",
    *,
    train_shape: Sequence[int] | None = None,
    scaling: str = "convention",
    device=None,
    dtype=torch.float32,
) -> Tensor:
    """Positions of a patch grid of ``shape`` (e.g. (H', W') or (T', H', W')), as (prod(shape), len(shape)).

    ``scaling`` ("convention", "extend" or "rescale") says how a grid other than
    ``train_shape`` is placed; "extend" and "rescale" need ``train_shape``.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling: expected one of {SCALINGS}, got {scaling!r}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) == 0:
        raise ValueError("shape: expected at least one axis")
    if train_shape is not None:
        train_shape = (train_shape,) if isinstance(train_shape, int) else tuple(train_shape)
        if len(train_shape) != len(shape):
            raise ValueError(f"train_shape: expected {len(shape)} sizes to match shape={shape}, got {train_shape}")
    if scaling != "convention":
        if train_shape is None:
            raise ValueError(f"train_shape: scaling={scaling!r} places the grid relative to the training grid; "
                             "give train_shape")
        if convention not in CONVENTIONS:
            raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")
        axes = [_scaled_axis(n, train_shape[i], convention, scaling, device, dtype) for i, n in enumerate(shape)]
    else:
        axes = [
            axis_coordinates(n, convention, None if train_shape is None else train_shape[i], device=device,
                             dtype=dtype)
            for i, n in enumerate(shape)
        ]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], -1)


def with_prefix(positions: Tensor, num_prefix_tokens: int, value: float | Tensor = 0.0) -> Tensor:
    """Prepend positions for CLS/register tokens: (N, d) -> (P + N, d), or batched (B, N, d)."""
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens: expected an integer >= 0, got {num_prefix_tokens!r}")
    if not isinstance(positions, Tensor) or positions.ndim not in (2, 3):
        shape = tuple(positions.shape) if isinstance(positions, Tensor) else type(positions).__name__
        raise ValueError(f"positions: expected a tensor of shape (N, d) or (B, N, d), got {shape}")
    if num_prefix_tokens == 0:
        return positions
    d = positions.shape[-1]
    try:
        prefix = torch.as_tensor(value, dtype=positions.dtype, device=positions.device)
        prefix = prefix.expand(num_prefix_tokens, d) if prefix.ndim < 2 else prefix
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"value: expected a number, ({d},) or ({num_prefix_tokens}, {d}) positions, "
                         f"got {value!r}") from None
    if prefix.shape != (num_prefix_tokens, d):
        raise ValueError(f"value: expected a number, ({d},) or ({num_prefix_tokens}, {d}) positions, "
                         f"got shape {tuple(prefix.shape)}")
    if positions.ndim == 3:
        prefix = prefix.expand(positions.shape[0], num_prefix_tokens, d)
    return torch.cat((prefix, positions), -2)


def check_positions(positions, pos_dims: int, name: str = "positions", dtype: torch.dtype = torch.float32) -> Tensor:
    """Validate positions of shape (N, d) or (B, N, d) and return them as ``dtype`` (B', N, d)."""
    if not isinstance(positions, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (N, {pos_dims}) or (B, N, {pos_dims}), "
                        f"got {type(positions).__name__}")
    if positions.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape (N, {pos_dims}) or (B, N, {pos_dims}), got {tuple(positions.shape)}")
    if positions.shape[-1] != pos_dims:
        raise ValueError(
            f"{name}: expected last dimension pos_dims={pos_dims}, got shape {tuple(positions.shape)}"
        )
    if positions.is_complex():
        raise TypeError(f"{name}: expected real coordinates, got dtype {positions.dtype}")
    positions = positions.to(dtype)
    # The finiteness check needs a host read, which tracing cannot express; traced
    # graphs take their positions from buffers that were checked eagerly. On an
    # accelerator a host read is a synchronisation per forward pass, so the check
    # there is a device-side assertion that fails asynchronously instead.
    if not tracing():
        finite = torch.isfinite(positions).all()
        if positions.device.type == "cpu":
            if not bool(finite):
                raise ValueError(f"{name}: contains NaN or inf values")
        else:
            torch._assert_async(finite, f"{name}: contains NaN or inf values")
    return positions if positions.ndim == 3 else positions.unsqueeze(0)

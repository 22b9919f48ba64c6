"""Additive baselines: absolute position embeddings (DeiT-III) and no encoding.

``absolute`` adds a table E(p) to the patch tokens before the first block,

    x_i <- x_i + E(p_i),

instead of rotating q and k. The table is learned (truncated normal, std
0.02, as in DeiT-III) or fixed sin-cos (each axis takes an equal share of the
channels, half sines and half cosines of p * 10000^(-2j/c)). For a patch grid
other than the training one, a learned table is resized by interpolation
(bicubic in 2-D, trilinear in 3-D, linear in 1-D) and a sin-cos table is
evaluated at the training grid's range; with ``truncate=True`` a 1-D sequence
shorter than the table takes the table's first rows instead, so a token's
embedding does not depend on how much text follows it (the text LM). Prefix
tokens (CLS, registers) get no embedding. ``none`` is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import PositionEncoding, _positive_int

__all__ = ["AbsolutePositionEmbedding", "NoPositionEncoding"]

_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def sincos_table(grid_shape: Sequence[int], embed_dim: int, train_shape: Sequence[int]) -> Tensor:
    """(prod(grid_shape), embed_dim) fixed sin-cos embedding; coordinates span the training grid's range."""
    d = len(grid_shape)
    per_axis = embed_dim // (2 * d)
    freqs = 10000.0 ** (-torch.arange(per_axis, dtype=torch.float64) / max(per_axis, 1))
    axes = [torch.arange(n, dtype=torch.float64) * (t / n) for n, t in zip(grid_shape, train_shape)]
    mesh = [m.reshape(-1) for m in torch.meshgrid(*axes, indexing="ij")]
    parts = []
    for coord in mesh:
        angles = coord[:, None] * freqs[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    table = torch.cat(parts, -1)
    return F.pad(table, (0, embed_dim - table.shape[-1])).float()


#: Options every ``liere.build`` method takes (models pass them uniformly); they mean nothing here.
_COMMON = ("num_layers", "share_layers", "share_heads", "layout", "cache", "block_size", "prefix_position")


def _check_common(name: str, options: dict) -> None:
    """Reject misspelled options and rotary-only settings that would be silently ignored."""
    unknown = sorted(set(options) - set(_COMMON))
    if unknown:
        raise TypeError(f"{unknown[0]}: {name!r} takes no option {unknown[0]!r} (options: pos_dims, head_dim, "
                        f"num_heads, num_prefix_tokens{', grid_shape, embed_dim, kind' if name == 'absolute' else ''})")
    if options.get("block_size") is not None:
        raise ValueError(f"block_size: {name!r} has no rotation blocks; leave block_size unset")
    if options.get("prefix_position") is not None:
        raise ValueError(f"prefix_position: {name!r} gives prefix tokens no position; leave it unset")
    if "num_layers" in options:
        _positive_int("num_layers", options["num_layers"])


class AbsolutePositionEmbedding(PositionEncoding):
    """x (B, P + N, C) -> x + E, with E added to the N patch tokens of a grid ``grid_shape``."""

    name = "absolute"
    options = ("grid_shape", "embed_dim", "kind", "truncate")
    additive = True

    def __init__(
        self,
        *,
        pos_dims: int,
        grid_shape: Sequence[int] | None = None,
        embed_dim: int | None = None,
        head_dim: int | None = None,
        num_heads: int | None = None,
        kind: str = "learned",
        truncate: bool = False,
        num_prefix_tokens: int = 0,
        **common,
    ):
        super().__init__()
        _check_common("absolute", common)
        _positive_int("pos_dims", pos_dims)
        _positive_int("num_prefix_tokens", num_prefix_tokens, 0)
        if embed_dim is None:
            if head_dim is None or num_heads is None:
                raise ValueError("embed_dim: pass embed_dim, or head_dim and num_heads (embed_dim = head_dim * num_heads)")
            embed_dim = _positive_int("head_dim", head_dim) * _positive_int("num_heads", num_heads)
        else:
            _positive_int("embed_dim", embed_dim)
            for name, value in (("head_dim", head_dim), ("num_heads", num_heads)):
                if value is not None:
                    _positive_int(name, value)
        if grid_shape is None:
            raise ValueError("grid_shape: 'absolute' needs the patch grid it is trained at, e.g. grid_shape=(8, 8)")
        grid_shape = (grid_shape,) if isinstance(grid_shape, int) else tuple(int(g) for g in grid_shape)
        if len(grid_shape) != pos_dims or min(grid_shape) < 1:
            raise ValueError(f"grid_shape: expected {pos_dims} positive sizes (pos_dims={pos_dims}), got {grid_shape}")
        if kind not in ("learned", "sincos"):
            raise ValueError(f"kind: expected 'learned' or 'sincos', got {kind!r}")
        self.pos_dims, self.embed_dim, self.grid_shape, self.kind = pos_dims, embed_dim, grid_shape, kind
        self.num_prefix_tokens, self.truncate = num_prefix_tokens, bool(truncate)
        if kind == "learned":
            self.table = nn.Parameter(torch.empty(1, embed_dim, *grid_shape))
            nn.init.trunc_normal_(self.table, std=0.02)
        else:
            self._register_fixed("table")

    def _make_buffer(self, name: str) -> Tensor:
        if name != "table":
            return super()._make_buffer(name)
        shape = self.grid_shape
        return sincos_table(shape, self.embed_dim, shape).T.reshape(1, self.embed_dim, *shape).contiguous()

    def embedding(self, grid_shape: Sequence[int] | None = None) -> Tensor:
        """The (prod(grid_shape), embed_dim) table for a patch grid."""
        grid_shape = self.grid_shape if grid_shape is None else tuple(
            g if isinstance(g, torch.SymInt) else int(g) for g in grid_shape)  # symbolic under export
        if len(grid_shape) != self.pos_dims:
            raise ValueError(f"grid_shape: expected {self.pos_dims} sizes, got {grid_shape}")
        symbolic = not all(isinstance(g, int) for g in grid_shape)
        if not symbolic and grid_shape == self.grid_shape:
            table = self.table
        elif self.truncate and self.pos_dims == 1 and grid_shape[0] < self.grid_shape[0]:
            return self.table.flatten(2).transpose(1, 2)[0, : grid_shape[0]]
        elif self.kind == "sincos":
            return sincos_table(grid_shape, self.embed_dim, self.grid_shape).to(self.table.device)
        else:
            mode = _MODES[self.pos_dims] if self.pos_dims in _MODES else "nearest"
            table = F.interpolate(self.table, size=grid_shape, mode=mode, align_corners=False)
        return table.flatten(2).transpose(1, 2)[0]

    def embed(self, tokens: Tensor, grid_shape: Sequence[int] | None = None) -> Tensor:
        """Tokens (B, P + N, embed_dim) with E(grid) added to the N patch tokens."""
        if tokens.ndim != 3 or tokens.shape[-1] != self.embed_dim:
            raise ValueError(f"tokens: expected (B, N, embed_dim={self.embed_dim}), got {tuple(tokens.shape)}")
        table = self.embedding(grid_shape).to(tokens.dtype)
        p = self.num_prefix_tokens
        if tokens.shape[1] != p + table.shape[0]:
            raise ValueError(
                f"tokens: expected {p} prefix + {table.shape[0]} patch tokens for grid {grid_shape or self.grid_shape}, "
                f"got {tokens.shape[1]}"
            )
        if p == 0:
            return tokens + table
        return torch.cat((tokens[:, :p], tokens[:, p:] + table), 1)

    def forward(self, tokens: Tensor, grid_shape: Sequence[int] | None = None) -> Tensor:
        return self.embed(tokens, grid_shape)

    def generators(self, layer: int = 0):
        return None

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, grid_shape={self.grid_shape}, embed_dim={self.embed_dim}"
                + (", truncate=True" if self.truncate else ""))


class NoPositionEncoding(PositionEncoding):
    """No position information: q and k pass through unchanged."""

    name = "none"

    def __init__(self, *, pos_dims: int = 1, head_dim: int | None = None, num_heads: int | None = None,
                 num_prefix_tokens: int = 0, **common):
        super().__init__()
        _check_common("none", common)
        for name, value in (("head_dim", head_dim), ("num_heads", num_heads)):
            if value is not None:
                _positive_int(name, value)
        _positive_int("num_prefix_tokens", num_prefix_tokens, 0)
        self.pos_dims = _positive_int("pos_dims", pos_dims)

    def forward(self, q: Tensor, k: Tensor, positions_or_rotation=None, *, layer: int = 0):
        return q, k

    def generators(self, layer: int = 0):
        return None

"""``Rotation``: a precomputed R(p), independent of the batch of q and k.

A rotation is block-diagonal with M blocks of size b on the first M*b
channels of each head; the remaining ``head_dim - M*b`` channels are left as
they are. It is stored in one of two forms:

* ``planar``  b = 2 as ``cos`` and ``sin`` of the angles, shape (L, Bp, Hp, N, M).
  Block m acts on channels (2m, 2m+1) as [[cos, -sin], [sin, cos]]
  (interleaved pairs, as in the original RoPE and rotary-embedding-torch).
* ``blocks``  dense blocks, shape (L, Bp, Hp, N, M, b, b), block m acting on
  channels [m*b, (m+1)*b).

L is the number of layers with their own generators (1 when shared), Bp is
1 (positions shared by the batch) or B, Hp is 1 (shared by heads) or H. The
size-1 axes broadcast, so a rotation costs nothing per sample or per head
when it does not depend on them.

An optional ``basis`` (Lb, Hb, r, r), Lb in {1, L} and Hb in {1, Hp}, is an
orthogonal change of basis of the first r channels, shared by all tokens
(STRING's P): the rotation is then B . R0 . B^T, with R0 the block form above.

A rotation of L layers may instead hold one part per layer (``Rotation.from_layers``), each a rotation
of one layer with its own tensors, and no (L, ...) tensor at all: what an encoding returns when the
stacked tensor would be large (dense per-layer LieRE on the CPU, see ``BlockEncoding._compute``).
``layer(i)`` returns part i; ``stacked()`` gives the one-tensor form.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

__all__ = ["Rotation"]


@dataclass(frozen=True)
class Rotation:
    head_dim: int
    cos: Tensor | None = None
    sin: Tensor | None = None
    blocks: Tensor | None = None
    basis: Tensor | None = None
    # The blocks are known to be orthogonal (exponentials of skew-symmetric matrices, products of rotations), as
    # every encoding in liere makes them: the CPU kernel's backward may then read the rotated q and k instead of
    # the inputs (ops/cpu_kernel.py). Leave False for blocks of other origin; it changes speed, never results.
    orthogonal: bool = False
    # One rotation of one layer per layer, instead of the tensors above (see the module's docstring).
    parts: tuple["Rotation", ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_layers(cls, parts) -> "Rotation":
        """A rotation of len(parts) layers, layer i being ``parts[i]`` (one-layer rotations of equal shapes)."""
        parts = tuple(parts)
        if not parts or any(not isinstance(p, Rotation) for p in parts):
            raise ValueError("Rotation.from_layers: expected a non-empty sequence of Rotation")
        first = parts[0]
        for p in parts:
            if p.num_layers != 1:
                raise ValueError(f"Rotation.from_layers: every part must hold one layer, got {p.num_layers}")
            if (p.is_planar != first.is_planar or p._data.shape != first._data.shape or p.head_dim != first.head_dim
                    or (p.basis is None) != (first.basis is None)):
                raise ValueError("Rotation.from_layers: the parts differ in form or shape")
        if len(parts) == 1:
            return first
        return cls(first.head_dim, orthogonal=all(p.orthogonal for p in parts), parts=parts)

    def __post_init__(self):
        if self.parts is not None:
            if any(t is not None for t in (self.cos, self.sin, self.blocks, self.basis)):
                raise ValueError("Rotation: give either parts (one per layer) or tensors, not both")
            return
        if (self.blocks is None) == (self.cos is None):
            raise ValueError("Rotation: give either cos and sin (planar form) or blocks, not both")
        if self.cos is not None and (self.sin is None or self.sin.shape != self.cos.shape):
            raise ValueError("Rotation: cos and sin must both be given, with the same shape")
        if self.basis is not None and (self.basis.ndim != 4 or self.basis.shape[-1] != self.basis.shape[-2]
                                       or self.basis.shape[-1] > self.head_dim):
            raise ValueError(f"Rotation: basis must be (L, H, r, r) with r <= head_dim, got {tuple(self.basis.shape)}")

    # ----- shape --------------------------------------------------------------------
    @property
    def _data(self) -> Tensor:
        if self.parts is not None:
            return self.parts[0]._data
        return self.cos if self.blocks is None else self.blocks

    @property
    def is_planar(self) -> bool:
        return self.parts[0].is_planar if self.parts is not None else self.blocks is None

    @property
    def block_size(self) -> int:
        return 2 if self.is_planar else self._data.shape[-1]

    @property
    def num_blocks(self) -> int:
        return self._data.shape[4]

    @property
    def num_layers(self) -> int:
        return len(self.parts) if self.parts is not None else self._data.shape[0]

    @property
    def batch_size(self) -> int:
        return self._data.shape[1]

    @property
    def num_heads(self) -> int:
        return self._data.shape[2]

    @property
    def num_tokens(self) -> int:
        return self._data.shape[3]

    @property
    def dtype(self) -> torch.dtype:
        return self._data.dtype

    @property
    def device(self) -> torch.device:
        return self._data.device

    # ----- slicing ------------------------------------------------------------------
    def _index(self, dim: int, index) -> "Rotation":
        if self.parts is not None:
            if dim == 0:  # a layer's own part, or a selection of them
                return self.stacked()._index(0, index) if not isinstance(index, int) else self.layer(index)
            return Rotation.from_layers(p._index(dim, index) for p in self.parts)
        what = {0: "layer", 2: "heads", 3: "tokens"}.get(dim, "index")
        size = self._data.shape[dim]
        if isinstance(index, bool) or not isinstance(index, (int, slice, Tensor)):
            raise TypeError(f"Rotation.{what}: expected an int, a slice or an index tensor, got {type(index).__name__}")
        if isinstance(index, int) and not -size <= index < size:
            raise IndexError(f"Rotation.{what}: index {index} out of range for {size} {what}")
        if isinstance(index, Tensor):
            if index.dtype in (torch.bool,) or index.is_floating_point() or index.is_complex():
                raise TypeError(f"Rotation.{what}: expected an integer index tensor, got dtype {index.dtype}")
            if index.numel() and (int(index.min()) < -size or int(index.max()) >= size):
                raise IndexError(f"Rotation.{what}: index values must lie in [-{size}, {size}) for {size} {what}, "
                                 f"got [{int(index.min())}, {int(index.max())}]")

        def take(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            if isinstance(index, int):
                index_ = slice(index, index + 1) if index != -1 else slice(-1, None)
            else:
                index_ = index
            if isinstance(index_, Tensor):
                index_ = index_.to(t.device)
                if dim == 3 and index_.ndim == 2:  # per-sample token indices (B, N_kept)
                    return _gather_tokens(t, index_)
                return t.index_select(dim, index_.reshape(-1))
            return t[(slice(None),) * dim + (index_,)]

        basis = self.basis
        if basis is not None and dim in (0, 2) and basis.shape[dim // 2] > 1:
            basis = take(basis.movedim(dim // 2, dim)).movedim(dim, dim // 2)
        return replace(self, cos=take(self.cos), sin=take(self.sin), blocks=take(self.blocks), basis=basis)

    def without_basis(self) -> "Rotation":
        """R0, the block part (the rotation itself when there is no basis)."""
        if self.parts is not None:
            return Rotation.from_layers(p.without_basis() for p in self.parts)
        return self if self.basis is None else replace(self, basis=None)

    def stacked(self) -> "Rotation":
        """The same rotation with one (L, ...) tensor per field (itself unless it holds per-layer parts)."""
        if self.parts is None:
            return self
        cat = lambda ts: None if ts[0] is None else torch.cat(ts, 0)  # noqa: E731
        fields = {name: cat([getattr(p, name) for p in self.parts]) for name in ("cos", "sin", "blocks")}
        bases = [p.basis for p in self.parts]
        basis = None if bases[0] is None else (bases[0] if all(b is bases[0] for b in bases) else torch.cat(bases, 0))
        return Rotation(self.head_dim, basis=basis, orthogonal=self.orthogonal, **fields)

    def layer(self, index: int) -> "Rotation":
        """The rotation of one layer (a no-op when layers share generators)."""
        if self.num_layers == 1:
            return self
        if not -self.num_layers <= index < self.num_layers:
            raise IndexError(f"Rotation.layer: layer {index} out of range for {self.num_layers} layers")
        if self.parts is not None:
            part = self.parts[index]  # ``replace(rotation, orthogonal=False)`` reaches the parts too
            return part if part.orthogonal == self.orthogonal else replace(part, orthogonal=self.orthogonal)
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return self._index(0, index)  # a traced graph fuses the slices; no Python-side cache there
        return self._layers()[index]

    def _layers(self) -> tuple["Rotation", ...]:
        """Every layer's rotation, made once with ``unbind``.

        Slicing layer i out of the (L, ...) tensors would cost, in the backward,
        one zero-filled full-size gradient per layer (L^2 work and L fresh
        buffers); one ``unbind`` has a single backward that stacks the L layers'
        gradients.
        """
        cached = self.__dict__.get("_layer_cache")
        if cached is None:
            def split(t: Tensor | None):
                return [None] * self.num_layers if t is None else [x.unsqueeze(0) for x in t.unbind(0)]

            basis = self.basis
            bases = split(basis) if basis is not None and basis.shape[0] > 1 else [basis] * self.num_layers
            cached = tuple(replace(self, cos=c, sin=s, blocks=b, basis=p)
                           for c, s, b, p in zip(split(self.cos), split(self.sin), split(self.blocks), bases))
            object.__setattr__(self, "_layer_cache", cached)
        return cached

    def heads(self, index) -> "Rotation":
        """Keep some heads: an int, a slice, or a 1-D index tensor. No-op for head-shared rotations."""
        if self.num_heads == 1:
            return self
        return self._index(2, index)

    def tokens(self, index) -> "Rotation":
        """Keep some tokens: an int, a slice, a 1-D index tensor, or per-sample indices (B, N_kept).

        Per-sample indices are what MAE-style token dropping and packed
        sequences produce; the result then has one rotation per sample.
        """
        return self._index(3, index)

    def to(self, *args, **kwargs) -> "Rotation":
        if self.parts is not None:
            return Rotation.from_layers(p.to(*args, **kwargs) for p in self.parts)
        move = lambda t: None if t is None else t.to(*args, **kwargs)  # noqa: E731
        return replace(self, cos=move(self.cos), sin=move(self.sin), blocks=move(self.blocks), basis=move(self.basis))

    def dense(self) -> Tensor:
        """The full (L, Bp, Hp, N, head_dim, head_dim) matrices, for tests and inspection."""
        if self.parts is not None:
            return torch.cat([p.dense() for p in self.parts], 0)
        if self.is_planar:
            c, s = self.cos, self.sin
            blocks = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)
        else:
            blocks = self.blocks
        *lead, m, b, _ = blocks.shape
        out = blocks.new_zeros(*lead, self.head_dim, self.head_dim)
        for j in range(m):
            out[..., j * b : (j + 1) * b, j * b : (j + 1) * b] = blocks[..., j, :, :]
        rest = torch.arange(m * b, self.head_dim, device=blocks.device)
        out[..., rest, rest] = 1.0
        if self.basis is not None:
            r = self.basis.shape[-1]
            full = torch.eye(self.head_dim, dtype=out.dtype, device=out.device).repeat(*self.basis.shape[:2], 1, 1)
            full[..., :r, :r] = self.basis.to(out.dtype)
            full = full[:, None, :, None]  # (Lb, 1, Hb, 1, D, D)
            out = full @ out @ full.transpose(-1, -2)
        return out


def _gather_tokens(t: Tensor, index: Tensor) -> Tensor:
    """t: (L, Bp, Hp, N, ...) and index: (B, K) -> (L, B, Hp, K, ...)."""
    lead, bp, hp = t.shape[0], t.shape[1], t.shape[2]
    batch = index.shape[0]
    if bp not in (1, batch):
        raise ValueError(f"Rotation.tokens: index has batch {batch} but the rotation has batch {bp}")
    t = t.expand(lead, batch, *t.shape[2:])
    rest = t.shape[4:]
    idx = index.view(1, batch, 1, index.shape[1], *([1] * len(rest))).expand(lead, batch, hp, index.shape[1], *rest)
    return torch.gather(t, 3, idx)

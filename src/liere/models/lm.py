"""A small causal transformer for byte/character-level language modelling.

    ids (B, T) --embedding--> (B, T, dim) --pe.embed(x, (T,))--> depth x causal Block(x, R)
        --> LN --> logits (B, T, vocab)   (output layer tied to the embedding, as in GPT-2),
    R = pe.rotation(positions(T))

As in the ViT, ``embed`` is the identity unless the encoding is additive and
``rotation`` is None unless it is rotary. Positions are 1-D,
``liere.positions.grid((T,), convention, train_shape=(context_length,))``. A
sequence up to the training context uses the first T training positions (and an
absolute table its first T rows), so within the training context a token's
position does not depend on how much text follows it. Longer sequences place the
whole grid anew under the convention, which is how length extrapolation is
tested. Only ``index`` (coordinate i) keeps the earlier tokens' positions there:
under ``centers`` ((i + 0.5) / T) and ``liere`` (linspace(0, T / context_length, T))
every coordinate depends on T, so past ``context_length`` a token's position does
change with how much text follows it (as does an absolute table, which is then
interpolated). Attention is causal SDPA; the rotation is computed once per
forward pass, as in the ViT.

This is the setting where lucidrains reported that LieRE loses to 1-D RoPE; with
``method="rope"`` or ``method="liere"`` (pos_dims = 1) the claim can be checked.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import liere
from liere.encodings import canonical_name, method_class
from liere.positions import grid as position_grid

from .attention import Block, init_weights

__all__ = ["TextTransformer"]


class TextTransformer(nn.Module):
    """Causal LM: ``forward(ids (B, T)) -> logits (B, T, vocab_size)``."""

    def __init__(
        self,
        *,
        vocab_size: int = 256,
        context_length: int = 128,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        method: str = "rope",
        block_size: int | None = None,
        share_layers: bool = False,
        share_heads: bool = False,
        convention: str | None = None,
        drop_path: float = 0.0,
        tie_weights: bool = True,
        pe_options: dict | None = None,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim: {dim} is not divisible by num_heads={num_heads}")
        if context_length < 1 or vocab_size < 1:
            raise ValueError(f"context_length and vocab_size must be positive, got {context_length}, {vocab_size}")
        self.context_length, self.method = int(context_length), canonical_name(method)
        self.embed = nn.Embedding(vocab_size, dim)
        pe_options = dict(pe_options or {})
        options = method_class(self.method).options
        if "grid_shape" in options:  # a table for the training context: its first rows for shorter text
            pe_options.setdefault("grid_shape", (self.context_length,))
            pe_options.setdefault("truncate", True)
        self.pe = liere.build(
            self.method, pos_dims=1, head_dim=dim // num_heads, num_heads=num_heads, block_size=block_size,
            num_layers=depth, share_layers=share_layers, share_heads=share_heads, **pe_options,
        )
        self.convention = convention or self.pe.default_convention
        if self.convention not in liere.positions.CONVENTIONS:
            raise ValueError(f"convention: expected one of {liere.positions.CONVENTIONS}, got {convention!r}")
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]  # stochastic depth grows linearly
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, layer=i, mlp_ratio=mlp_ratio, causal=True, drop_path=rates[i]) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.apply(init_weights)
        if tie_weights:
            self.head.weight = self.embed.weight
        self.register_buffer(
            "train_positions", position_grid((self.context_length,), self.convention), persistent=False
        )
        self._positions: dict[int, Tensor] = {}

    def positions(self, length: int) -> Tensor:
        """Positions (T, 1): a prefix of the training grid, or the grid extended under the convention."""
        if length <= self.context_length:
            return self.train_positions[:length]
        device = self.train_positions.device
        pos = self._positions.get(length)
        if pos is None or pos.device != device:
            pos = position_grid((length,), self.convention, train_shape=(self.context_length,), device=device)
            self._positions[length] = pos
        return pos

    def forward(self, ids: Tensor) -> Tensor:
        if ids.ndim != 2:
            raise ValueError(f"ids: expected (B, T) token ids, got shape {tuple(ids.shape)}")
        length = ids.shape[1]
        x = self.pe.embed(self.embed(ids), (length,))  # absolute past the context: its table interpolated
        rotation = self.pe.rotation(self.positions(length))  # once, for every layer
        for block in self.blocks:
            x = block(x, rotation)
        return self.head(self.norm(x))

    def no_weight_decay(self) -> set[str]:
        """Parameters weight decay leaves alone (nanoGPT/timm convention): the encoding's."""
        return {f"pe.{name}" for name in self.pe.no_weight_decay()}

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

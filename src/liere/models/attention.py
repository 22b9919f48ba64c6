"""Transformer blocks with a pluggable position encoding.

One pre-norm block computes

    x <- x + Attn(LN(x)),   x <- x + MLP(LN(x)),

    Attn(x) = softmax((R_q q)(R_k k)^T / sqrt(D)) v      (scaled_dot_product_attention)

where q, k, v = x W_qkv split into heads, and (R_q q, R_k k) = pe(q, k, R, layer=i)
for rotary encodings. The rotation ``R`` is computed once per forward pass by the
model (``R = pe.rotation(positions)``) and passed to every block; a block never
computes rotations itself. Additive encodings (``absolute``) are applied by the
model before the first block, so blocks receive ``R = None`` and leave q, k alone.

The position encoding module is owned by the model and passed to ``forward``:
it is registered once (its parameters appear once in the state dict), while
per-layer generators are selected by ``layer``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention", "MLP", "Block", "DropPath"]


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``, rotating q and k by ``pe``."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, causal: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim: {dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim, self.causal = num_heads, dim // num_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, pe: nn.Module | None = None, rotation=None, layer: int = 0) -> Tensor:
        b, n, c = x.shape
        # (B, N, 3C) -> 3 x (B, H, N, D): the "bhnd" layout SDPA and the encodings expect.
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rotation is not None:
            q, k = pe(q, k, rotation, layer=layer)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (train only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block; ``layer`` is its index, which selects per-layer generators in ``pe``."""

    def __init__(self, dim: int, num_heads: int, *, layer: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 causal: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.layer = layer
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, causal=causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, pe: nn.Module | None = None, rotation=None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), pe, rotation, self.layer))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_weights(module: nn.Module) -> None:
    """ViT/GPT-style init: truncated normal (std 0.02) linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

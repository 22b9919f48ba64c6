"""Transformer blocks that rotate q and k by a ``Rotation``.

One pre-norm block computes

    x <- x + Attn(LN(x)),   x <- x + MLP(LN(x)),

    Attn(x) = softmax((R_i q)(R_i k)^T / sqrt(D)) v      (scaled_dot_product_attention)

where q, k, v = x W_qkv split into heads and R_i = R.layer(i) is block i's slice of
the rotation. The model computes ``R = pe.rotation(positions)`` once per forward pass
and passes it to every block; a block knows nothing of the encoding that made it.
``R = None`` (additive or no encoding) leaves q and k alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.apply import apply_rotation_qk
from ..rotation import Rotation

__all__ = ["Attention", "MLP", "Block", "DropPath"]


class Attention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention``, rotating q and k by ``rotation``."""

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, causal: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim: {dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim, self.causal = num_heads, dim // num_heads, causal
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, rotation: Rotation | None = None, layer: int = 0) -> Tensor:
        b, n, c = x.shape
        # (B, N, 3C) -> 3 x (B, H, N, D): the "bhnd" layout of SDPA and of apply_rotation_qk.
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if rotation is not None:
            q, k = apply_rotation_qk(q, k, rotation.layer(layer))
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
    """Pre-norm transformer block; ``layer`` is its index, which selects its slice of a per-layer rotation."""

    def __init__(self, dim: int, num_heads: int, *, layer: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 causal: bool = False, drop_path: float = 0.0):
        super().__init__()
        self.layer = layer
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, causal=causal)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, rotation: Rotation | None = None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rotation, self.layer))
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

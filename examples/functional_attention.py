"""The functional API in a hand-written attention: rotate any tensor, any subset of heads or tokens.

    python examples/functional_attention.py

1. An MAE-style encoder: each sample keeps its own random subset of patches, and
   the rotation is sliced to match with ``R.tokens(kept)`` (per-sample indices
   (B, K)), so the kept tokens are rotated exactly as in the full image.
2. Rotating only some heads (here half of them: the others stay position-free),
   with ``R.heads(...)``.
3. KV-cache style decoding: one new token at a time with ``R.tokens(slice(t, t+1))``.
Each part checks itself against the full computation and prints the difference.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import liere


class PartlyRotaryAttention(nn.Module):
    """Self-attention whose first ``rotary_heads`` heads are rotated; the rest see no positions."""

    def __init__(self, dim: int, heads: int, rotary_heads: int):
        super().__init__()
        self.heads, self.rotary_heads = heads, rotary_heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rotation: liere.Rotation) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # (B, H, N, D) each
        r = self.rotary_heads
        part = rotation.heads(slice(0, r))
        q = torch.cat((liere.apply_rotation(q[:, :r], part), q[:, r:]), 1)
        k = torch.cat((liere.apply_rotation(k[:, :r], part), k[:, r:]), 1)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=float, default=0.25, help="fraction of patches an MAE encoder keeps")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    batch, grid, dim, heads = 4, (8, 8), 64, 4
    pe = liere.build("liere", pos_dims=2, head_dim=dim // heads, num_heads=heads, block_size=4, num_prefix_tokens=1)
    positions = liere.positions.grid(grid)            # (64, 2)
    rotation = pe.rotation(positions)                 # (.., 1 + 64 tokens, ..): CLS first, identity
    attn = PartlyRotaryAttention(dim, heads, rotary_heads=2)
    tokens = torch.randn(batch, 1 + positions.shape[0], dim)
    worst = 0.0

    # 1. MAE: keep CLS plus a random K patches per sample.
    n = positions.shape[0]
    k = max(1, int(args.keep * n))
    kept = torch.rand(batch, n).argsort(-1)[:, :k]                 # (B, K) patch indices
    index = torch.cat((torch.zeros(batch, 1, dtype=torch.long), 1 + kept), 1)  # CLS is token 0
    visible = torch.gather(tokens, 1, index[..., None].expand(-1, -1, dim))
    q = attn.qkv(visible).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)[0]
    rotated = liere.apply_rotation(q, rotation.tokens(index))      # per-sample slice of the rotation
    full = liere.apply_rotation(attn.qkv(tokens).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)[0], rotation)
    reference = torch.stack([full[b][:, index[b]] for b in range(batch)])
    worst = max(worst, (rotated - reference).abs().max().item())
    # The same rotation from the kept positions directly: (B, K, 2) per-sample positions.
    direct = liere.apply_rotation(q, pe.rotation(positions[kept]))
    worst = max(worst, (direct - rotated).abs().max().item())
    print(f"MAE encoder: {batch} samples keep {k} of {n} patches; max difference to the full rotation "
          f"{worst:.1e}")

    # 2. Half the heads rotated, in a custom module.
    out = attn(tokens, rotation)
    print(f"partly rotary attention: output {tuple(out.shape)}")

    # 3. KV cache: rotate token t alone, as it arrives.
    keys = torch.randn(batch, heads, 1 + n, dim // heads)
    cache = [liere.apply_rotation(keys[:, :, t : t + 1], rotation.tokens(slice(t, t + 1))) for t in range(1 + n)]
    diff = (torch.cat(cache, 2) - liere.apply_rotation(keys, rotation)).abs().max().item()
    worst = max(worst, diff)
    print(f"KV cache: token-by-token rotation equals the full one within {diff:.1e}")
    return worst


if __name__ == "__main__":
    main()

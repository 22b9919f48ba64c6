"""Classify point clouds (sphere, cube, torus) with a small transformer whose rotary encoding takes the
points' own continuous 3-D coordinates as positions.

    python examples/point_cloud.py --steps 300

Nothing here is a grid: each sample is N points sampled on a randomly rotated,
scaled and shifted surface, and ``pe.rotation(xyz)`` takes per-sample positions
of shape (B, N, 3). The rotation is computed once per forward pass and shared by
every layer; ``layer=i`` picks layer i's generators.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import liere

SHAPES = ("sphere", "cube", "torus")


def random_rotation(batch: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(batch, 3, 3, generator=generator))
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]


def sample_shapes(batch: int, points: int, generator: torch.Generator):
    """xyz (B, N, 3) on the surface of a random shape per sample, and its label (B,)."""
    labels = torch.randint(0, len(SHAPES), (batch,), generator=generator)
    u = torch.rand(batch, points, 2, generator=generator)
    g = torch.randn(batch, points, 3, generator=generator)
    sphere = g / g.norm(dim=-1, keepdim=True)
    # Cube surface: a random point in [-1, 1]^3 pushed onto a random face.
    cube = torch.rand(batch, points, 3, generator=generator) * 2 - 1
    face = torch.randint(0, 3, (batch, points, 1), generator=generator)
    sign = torch.randint(0, 2, (batch, points, 1), generator=generator) * 2.0 - 1
    cube = cube.scatter(-1, face, sign)
    a, b = 2 * math.pi * u[..., 0], 2 * math.pi * u[..., 1]
    ring, tube = 0.75, 0.3
    torus = torch.stack(((ring + tube * b.cos()) * a.cos(), (ring + tube * b.cos()) * a.sin(), tube * b.sin()), -1)
    xyz = torch.stack((sphere, cube, torus), 1)[torch.arange(batch), labels]
    scale = 0.7 + 0.6 * torch.rand(batch, 1, 1, generator=generator)
    shift = 0.2 * torch.randn(batch, 1, 3, generator=generator)
    xyz = scale * xyz @ random_rotation(batch, generator) + shift
    return xyz + 0.01 * torch.randn(xyz.shape, generator=generator), labels


class PointTransformer(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 3, heads: int = 4, method: str = "liere", block_size: int = 4):
        super().__init__()
        self.heads, self.depth = heads, depth
        self.embed = nn.Sequential(nn.Linear(3, dim), nn.GELU(), nn.Linear(dim, dim))
        # Positions are the raw coordinates; each head/layer learns how fast to rotate along them.
        self.pe = liere.build(method, pos_dims=3, head_dim=dim // heads, num_heads=heads, num_layers=depth,
                              block_size=block_size)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2 * depth))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(depth))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(depth))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
                                 for _ in range(depth))
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, len(SHAPES)))

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        x = self.embed(xyz)
        rotation = self.pe.rotation(xyz)  # per-sample positions (B, N, 3), once for all layers
        for i in range(self.depth):
            q, k, v = self.qkv[i](self.norms[2 * i](x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
            q, k = self.pe(q, k, rotation, layer=i)
            x = x + self.proj[i](F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
            x = x + self.mlp[i](self.norms[2 * i + 1](x))
        return self.head(x.mean(1))


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="liere")
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=128)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = PointTransformer(method=args.method, block_size=args.block_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=False)
    for step in range(1, args.steps + 1):
        xyz, y = sample_shapes(args.batch, args.points, gen)
        loss = F.cross_entropy(model(xyz), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        xyz, y = sample_shapes(512, args.points, gen)
        acc = (model(xyz).argmax(-1) == y).float().mean().item()
    print(f"test accuracy ({', '.join(SHAPES)}): {acc:.3f}")
    return acc


if __name__ == "__main__":
    main()

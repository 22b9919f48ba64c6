"""The arithmetic floor of dense LieRE (b = 64) in the step benchmark's ViT-Tiny, on this machine.

Counts the 64x64 products of one step's exponentials, forward and backward, for the step model at its
initialisation (the 8x8 grid), in both forms the step benchmark runs:

* per layer (12 sets of generators): 4,608 exponentials, a 75 MB batch, above ``expm._SAVE_INPUT_BYTES``, so
  the backward recomputes what the forward made: 5 products for B^2, B^4 and the degree-12 polynomial plus s
  squarings forward, the same again in the backward, then 2 per squaring and 10 for the polynomial to reverse
  them: 20 + 4 s each;
* shared by the layers: 384 exponentials (6 heads x 64 patches), 6 MB, small enough to keep the polynomial and
  the squares for the backward: 15 + 3 s each.

Applying the rotations to q and k is 3 products of the same size per layer (forward, d/dx, d/dR). Then it times
torch.bmm on batches of 64x64 matrices (the shape of both the exponentials' and the apply's products) and a
1024^2 matmul (2 threads), and prints each case's time in products at the best measured batched rate: the
least the rotation can cost on this machine with these algorithms.

    python benchmarks/dense_floor.py
"""
import time

import torch

from liere.bench import STEP_CASE, _step_model
from liere.ops import expm
from liere.positions import grid

torch.set_num_threads(2)
torch.manual_seed(0)
FLOP = 2 * 64**3  # one 64x64 product


def squarings(share: bool) -> tuple[torch.Tensor, int]:
    model, _ = _step_model(STEP_CASE, "liere", 64, share, "cpu")
    enc = next(m for m in model.modules() if hasattr(m, "_blocks_at"))  # the ViT's LieRE encoding
    a = enc._blocks_at(grid((8, 8), enc.default_convention)[None]).detach()
    flat = a.reshape(-1, 64, 64)
    keeps = flat.numel() * flat.element_size() <= expm._SAVE_INPUT_BYTES
    theta = expm._theta(flat)
    s, *_ = expm._refine(flat, expm._num_squarings(flat, theta), theta)
    return s, keeps


def bmm_rate(n: int) -> float:
    x, y = torch.randn(n, 64, 64), torch.randn(n, 64, 64)
    out = torch.empty_like(x)
    best = 1e9
    for _ in range(9):
        t0 = time.perf_counter()
        torch.bmm(x, y, out=out)
        best = min(best, time.perf_counter() - t0)
    return n * FLOP / best / 1e9


apply_gflop = 3 * 12 * 2 * 32 * 65 * 6 * 64 * 64 * 2 / 1e9  # 3 products x 12 layers x (q, k) x rows x 64 x 64 x 2
cases = {}
for label, share in (("per layer", False), ("shared", True)):
    s, keeps = squarings(share)
    per_exp = (15 + 3 * s) if keeps else (20 + 4 * s)
    gflop = per_exp.sum().item() * FLOP / 1e9
    cases[label] = (s.shape[0], gflop)
    print(f"{label}: exponentials {s.shape[0]}, squarings mean {s.mean():.2f} (min {s.min():.0f}, max {s.max():.0f}); "
          f"backward {'keeps' if keeps else 'recomputes'}: {per_exp.mean():.1f} products each, {gflop:.1f} GFLOP; "
          f"apply {apply_gflop:.1f} GFLOP")
rates = {n: bmm_rate(n) for n in sorted({n for n, _ in cases.values()} | {64})}
for n, rate in rates.items():
    print(f"bmm (n, 64, 64) @ (n, 64, 64), n = {n}: {rate:.0f} GFLOP/s")
m = torch.randn(1024, 1024)
best = min((lambda t0: (m @ m, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(7))
print(f"1024^2 matmul: {2 * 1024**3 / best / 1e9:.0f} GFLOP/s")
for label, (n, gflop) in cases.items():
    rate = max(rates.values())
    print(f"{label}: {gflop:.1f} + {apply_gflop:.1f} GFLOP at {rate:.0f} GFLOP/s = {(gflop + apply_gflop) / rate * 1e3:.0f} ms "
          f"of products per step (forward and backward)")

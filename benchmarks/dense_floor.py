"""The arithmetic floor of dense LieRE (b = 64) in the step benchmark's ViT-Tiny, on this machine.

Counts the 64x64 products of one step's exponentials, forward and backward (the step model at its
initialisation, per-layer generators, the 8x8 grid): each exponential runs 5 products for B^2, B^4 and the
degree-12 polynomial plus s squarings; its backward recomputes them (5 + s) and reverses them (2 per squaring,
10 for the polynomial), 20 + 4 s in all. Then times torch.bmm on batches of 64x64 matrices and a 1024^2
matmul (2 threads), the rates those products and the model's own can run at.

    python benchmarks/dense_floor.py
"""
import time, torch
from liere.bench import STEP_CASE, _step_model
from liere.ops import expm
from liere.positions import grid
torch.set_num_threads(2)
torch.manual_seed(0)
model, _ = _step_model(STEP_CASE, "liere", 64, False, "cpu")
enc = next(m for m in model.modules() if hasattr(m, "_blocks_at"))  # the ViT's LieRE encoding
pos = grid((8, 8), enc.default_convention)
a = enc._blocks_at(pos[None]).detach()
flat = a.reshape(-1, 64, 64)
theta = expm._theta(flat)
s, *_ = expm._refine(flat, expm._num_squarings(flat, theta), theta)
n = flat.shape[0]
prods = (20 + 4 * s).sum().item()
print(f"exponentials {n}, squarings mean {s.mean():.2f} (min {s.min():.0f}, max {s.max():.0f}); products fwd+bwd {prods:.0f}"
      f" = {prods / n:.1f} each; {prods * 2 * 64**3 / 1e9:.1f} GFLOP")
x = torch.randn(n, 64, 64); y = torch.randn(n, 64, 64); out = torch.empty_like(x)
for chunk in (n, 256, 64):
    best = 1e9
    for _ in range(7):
        t0 = time.perf_counter()
        for i in range(0, n, chunk):
            torch.bmm(x[i:i + chunk], y[i:i + chunk], out=out[i:i + chunk])
        best = min(best, time.perf_counter() - t0)
    print(f"bmm (.., 64, 64) in chunks of {chunk}: {n * 2 * 64**3 / best / 1e9:.0f} GFLOP/s")
m = torch.randn(1024, 1024)
best = min((lambda t0: (m @ m, time.perf_counter() - t0)[1])(time.perf_counter()) for _ in range(7))
print(f"1024^2 matmul: {2 * 1024**3 / best / 1e9:.0f} GFLOP/s")

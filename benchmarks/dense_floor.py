"""The arithmetic floor of dense LieRE (b = 64) in the step benchmark's ViT-Tiny, on this machine.

Counts the 64x64 products of one step's exponentials, forward and backward, for the step model at its
initialisation (the 8x8 grid), in both forms the step benchmark runs (per layer: 12 x 6 heads x 64 positions;
shared by the layers: 6 x 64), less the rotations made as products at multiples of other positions (the origin
and the 15 even grid points, ``liere.ops.multiples``: 3 products each, forward and backward). On the CPU both run liere's exponential kernel, one matrix at a time, whose backward recomputes
its forward: 5 products for B^2, B^4 and the degree-12 polynomial plus s squarings (and 2 for the orthogonalising
step after 6 or more) forward, the same 5 + s again backward, then 2 per squaring and 10 for the polynomial to
reverse them: 20 + 4 s (+ 2) each.

Applying the rotations to q and k is 3 products of the same size per layer (forward, d/dx, d/dR). Then it times
the rates at which this machine runs such products: the kernel's register tiles on one layer's q and k in cache
(2 x 32 rows of 64 per matrix, 390 matrices; the best of several calls), torch.bmm (MKL) on batches of 64x64
matrices, and a 1024^2 matmul, and prints each case's time in products at the best rate: the least the rotation
can cost on this machine with these algorithms.

    python benchmarks/dense_floor.py
"""
import time

import torch

import liere
from liere.bench import STEP_CASE, _step_model
from liere.ops import cpu_kernel, expm
from liere.positions import grid

torch.set_num_threads(2)
torch.manual_seed(0)
FLOP = 2 * 64**3  # one 64x64 product


def squarings(share: bool) -> tuple[torch.Tensor, int]:
    """Squaring counts of the exponentials one step runs, and how many rotations are products instead (positions
    that are multiples of others, ``liere.ops.multiples``: one product forward, two backward; the origin none)."""
    model, _ = _step_model(STEP_CASE, "liere", 64, share, "cpu")
    enc = next(m for m in model.modules() if hasattr(m, "_blocks_at"))  # the ViT's LieRE encoding
    pos = grid((8, 8), enc.default_convention)
    plan = enc._multiples_plan(pos[None])
    base = pos if plan is None else pos[plan.base]
    a = enc._blocks_at(base[None]).detach()
    flat = a.reshape(-1, 64, 64)
    theta = expm._theta(flat)
    s, *_ = expm._refine(flat, expm._num_squarings(flat, theta), theta)
    products = 0 if plan is None else sum(len(t) for t, _, _ in plan.levels) * a.shape[0] * a.shape[2]
    return s, products


def best_of(run, repeats: int = 9) -> float:
    run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def tile_rate(layer: bool) -> float | None:
    """The kernel's register tiles on 390 products of 64x64 (one 64-row product per rotation), operands in cache:
    ``layer``, one layer's q and k (batch 32) as the step lays them out (each matrix's rows one per sample, far
    apart); else each matrix's 64 rows contiguous, as the exponential's own matrices are."""
    if not cpu_kernel.available():
        return None
    ops = getattr(torch.ops, cpu_kernel._NAMESPACE)
    if layer:
        xs = [torch.randn(32, 6, 65, 64) for _ in range(2)]
        r_t = torch.randn(1, 6, 65, 1, 64, 64)
    else:  # (B=64, H=1, N=390, D=64) with the 64 rows of each token contiguous
        xs = [torch.randn(390, 64, 64).permute(1, 0, 2).unsqueeze(1)]
        r_t = torch.randn(1, 1, 390, 1, 64, 64)
    outs = [torch.empty_like(x) for x in xs]
    # 390 matrices, each multiplying 64 rows (2 x 32 or 1 x 64): 390 products of 64x64
    return 390 * FLOP / best_of(lambda: ops.rotate_tiles(xs, r_t, outs)) / 1e9


def bmm_rate(n: int) -> float:
    x, y = torch.randn(n, 64, 64), torch.randn(n, 64, 64)
    out = torch.empty_like(x)
    return n * FLOP / best_of(lambda: torch.bmm(x, y, out=out)) / 1e9


liere.tune_allocator()
apply_gflop = 3 * 12 * 2 * 32 * 65 * 6 * 64 * 64 * 2 / 1e9  # 3 products x 12 layers x (q, k) x rows x 64 x 64 x 2
cases = {}
for label, share in (("per layer", False), ("shared", True)):
    s, products = squarings(share)
    per_exp = 20 + 4 * s + 2 * (s >= expm._POLISH_FROM)
    gflop = (per_exp.sum().item() + 3 * products) * FLOP / 1e9
    cases[label] = gflop
    print(f"{label}: exponentials {s.shape[0]}, squarings mean {s.mean():.2f} (min {s.min():.0f}, max {s.max():.0f}); "
          f"{per_exp.float().mean():.1f} products each; {products} rotations as products at multiples (3 each); "
          f"{gflop:.1f} GFLOP; apply {apply_gflop:.1f} GFLOP")
rates = {f"bmm (n, 64, 64) @ (n, 64, 64), n = {n}": bmm_rate(n) for n in (64, 384)}
for layer in (True, False):
    tiles = tile_rate(layer)
    if tiles is not None:
        where = "one layer's q and k" if layer else "contiguous rows"
        rates[f"kernel tiles, 390 x (64 x 64) @ (64 x 64), {where}"] = tiles
for label, rate in rates.items():
    print(f"{label}: {rate:.0f} GFLOP/s")
m = torch.randn(1024, 1024)
print(f"1024^2 matmul: {2 * 1024**3 / best_of(lambda: m @ m, 7) / 1e9:.0f} GFLOP/s")
rate = max(rates.values())
for label, gflop in cases.items():
    print(f"{label}: {gflop:.1f} + {apply_gflop:.1f} GFLOP at {rate:.0f} GFLOP/s = {(gflop + apply_gflop) / rate * 1e3:.0f} ms "
          f"of products per step (forward and backward)")

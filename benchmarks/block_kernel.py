"""The CPU block kernel alone: rotation and gradient outer sums of one (32, 6, 64, 64) tensor, per block size.

Calls the compiled operators directly (no autograd, no copies), 2 threads, median of 30 calls after 3, and
checks each result against an einsum. ``LIERE_CPU_BANDED=0`` runs the row-by-row form for every size on the
same build, for an A/B of the banded form (README, Performance, CPU kernels):

    python benchmarks/block_kernel.py [2 3 4 5 6 8 16]
    LIERE_CPU_BANDED=0 python benchmarks/block_kernel.py 3 5 6
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from liere.ops import cpu_kernel

BATCH, HEADS, TOKENS, HEAD_DIM = 32, 6, 64, 64


def _median_ms(fn, calls: int = 30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str]) -> None:
    torch.set_num_threads(2)
    if not cpu_kernel.available():
        raise SystemExit(f"CPU kernels: {cpu_kernel.status()}")
    ops = getattr(torch.ops, cpu_kernel._NAMESPACE)
    print(f"CPU kernels: {cpu_kernel.status()}")
    for b in [int(v) for v in argv] or [2, 3, 4, 5, 6, 8, 16]:
        m = HEAD_DIM // b
        x = torch.randn(BATCH, HEADS, TOKENS, HEAD_DIM)
        grad = torch.randn_like(x)
        a = torch.randn(1, HEADS, TOKENS, m, b, b)  # one rotation row per head and token, shared by the batch
        out, ga = torch.empty_like(x), torch.empty_like(a)
        blocks = x[..., : m * b].unflatten(-1, (m, b))
        ops.rotate_blocks(x, a, out)
        want = torch.einsum("hnmji,bhnmj->bhnmi", a[0], blocks).flatten(-2)
        err = (out[..., : m * b] - want).abs().max().item()
        ops.block_outer_sums(grad, x, ga)
        gwant = torch.einsum("bhnmi,bhnmj->hnmij", grad[..., : m * b].unflatten(-1, (m, b)), blocks)[None]
        gerr = (ga - gwant).abs().max().item()
        print(f"b={b:<3} rotate {_median_ms(lambda: ops.rotate_blocks(x, a, out)):.3f} ms   "
              f"outer sums {_median_ms(lambda: ops.block_outer_sums(grad, x, ga)):.3f} ms   "
              f"max error {err:.1e} / {gerr:.1e}")


if __name__ == "__main__":
    main(sys.argv[1:])

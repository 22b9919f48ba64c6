"""The CPU kernel's skew exponentials against the torch path they replace, forward and backward.

Batches as LieRE uses them: the 12 layers of LieRE-8 on ViT-Tiny's 8x8 grid (37,440 blocks of 8x8), one
layer of it (3,072), and one layer of LieRE-16 (1,536 blocks of 16x16), at two generator scales (the
initialisation's and 7x larger, more squarings). One thread, interleaved rounds, min of ``--rounds``.

    python benchmarks/expm_kernel.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from liere.ops import cpu_kernel
from liere.ops.expm import _ExpmTaylorSS

CASES = [(8, 37_440), (8, 3_072), (16, 1_536)]


def measure(n: int, count: int, scale: float, rounds: int) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(n * count)
    u = torch.randn(count, n, n, generator=gen)
    a = ((u - u.mT) * scale).requires_grad_()
    grad = torch.randn(count, n, n, generator=gen)

    def kernel():
        torch.autograd.grad(cpu_kernel.skew_expm(a), a, grad)

    def torch_path():
        torch.autograd.grad(_ExpmTaylorSS.apply(a, False, None), a, grad)

    torch.testing.assert_close(cpu_kernel.skew_expm(a), _ExpmTaylorSS.apply(a, False, None), atol=2e-5, rtol=0)
    times = {kernel: [], torch_path: []}
    for _ in range(rounds + 1):
        for fn in times:
            t0 = time.perf_counter()
            fn()
            times[fn].append(time.perf_counter() - t0)
    return min(times[kernel][1:]), min(times[torch_path][1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds: expected an integer >= 1, got {args.rounds}")
    if not cpu_kernel.available():
        p.error(f"the CPU kernel is not available here: {cpu_kernel.status()}")
    torch.set_num_threads(1)
    print(f"skew exponentials, forward+backward, one thread, min of {args.rounds} interleaved rounds")
    for n, count in CASES:
        for scale in (0.3, 2.0):
            k, t = measure(n, count, scale, args.rounds)
            print(f"{count:>6} x {n}x{n}, entries ~N(0, {scale}^2): kernel {1e3 * k:7.1f} ms, torch path "
                  f"{1e3 * t:7.1f} ms ({k / t:.2f}x)")


if __name__ == "__main__":
    main()

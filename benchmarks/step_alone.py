"""One method's ViT-Tiny training step in a process of its own, as ``liere train`` runs it: time, minor page
faults and system time per step, with glibc's allocator as it is or tuned (``liere.tune_allocator``).

``liere bench --case step`` holds every method's model in one process, which changes how glibc reuses
memory; this measures the allocator's effect where it matters, one model per process:

    python benchmarks/step_alone.py "liere b=8" [--batch 32] [--steps 6] [--tune]

Transparent huge pages for torch's large buffers: run with ``THP_MEM_ALLOC_ENABLE=1`` in the environment.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import torch

import liere
from liere import bench


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("row", help="a row of liere bench --case step, e.g. 'rope_mixed' or 'liere b=8'")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--tune", action="store_true", help="call liere.tune_allocator() first")
    args = parser.parse_args(argv)
    rows = {label: row for label, *row in bench.STEP_ROWS}
    if args.row not in rows:
        parser.error(f"row: expected one of {', '.join(rows)}, got {args.row!r}")
    allocator = liere.tune_allocator() if args.tune else "glibc defaults (not tuned)"
    if os.environ.get("THP_MEM_ALLOC_ENABLE"):
        allocator += ", THP_MEM_ALLOC_ENABLE=" + os.environ["THP_MEM_ALLOC_ENABLE"]
    torch.set_num_threads(2)
    torch.manual_seed(0)
    case = bench.STEP_CASE
    method, block_size, share = rows[args.row]
    model, opt = bench._step_model(case, method, block_size, share, torch.device("cpu"))
    gen = torch.Generator().manual_seed(args.batch)
    x = torch.randn(args.batch, 3, case.image, case.image, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)
    for _ in range(2):  # warm-up: first-step allocations and the kernels' build
        bench._train_step(model, opt, x, y)
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        bench._train_step(model, opt, x, y)
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = args.steps
    print(f"{args.row}, batch {args.batch}, {allocator}: median step {1e3 * statistics.median(times):.0f} ms, "
          f"minor faults/step {(after.ru_minflt - before.ru_minflt) / n:.0f}, "
          f"system {(after.ru_stime - before.ru_stime) / n * 1e3:.0f} ms/step, "
          f"user {(after.ru_utime - before.ru_utime) / n * 1e3:.0f} ms/step, "
          f"max resident {after.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""A/B of the CPU exponential's chunk size (``liere.ops.expm._CHUNK_BYTES``) where it matters: dense per-layer
LieRE's 12 layers of rotation inside a ViT-Tiny step (``rotation_in_step.py``'s ``liere:64`` row, batch 32:
4,608 exponentials of 64x64, forward and backward, and the apply to q and k), the sizes alternated round by
round in one process, each round's row after one untimed call at the same size. A ``none`` row (the views
alone) runs in the same rounds for scale.

    python benchmarks/expm_chunks.py [--rounds 7] [--sizes-kb 8192 2048 1024]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import liere
from liere.ops import expm
from rotation_in_step import _row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sizes-kb", type=int, nargs="+", default=[8192, 2048, 1024])
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    print(f"allocator: {liere.tune_allocator()}")
    torch.set_num_threads(2)
    torch.manual_seed(0)
    none, dense = _row("none", args.batch), _row("liere:64", args.batch)
    times = {"none": [], **{kb: [] for kb in args.sizes_kb}}
    for _ in range(args.rounds):
        for key in times:
            step = none if key == "none" else dense
            if key != "none":
                expm._CHUNK_BYTES = key << 10
            step()
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)
    base = statistics.median(times["none"])
    print(f"batch {args.batch}, dense per-layer LieRE's rotation (12 layers, forward+backward), "
          f"median of {args.rounds} interleaved rounds")
    for key, ts in times.items():
        label = "none" if key == "none" else f"chunks of {key} kB"
        print(f"  {label:<20} {1e3 * statistics.median(ts):8.1f} ms   above none {1e3 * (statistics.median(ts) - base):8.1f}")


if __name__ == "__main__":
    main()

"""One training step of the project's ViT-Tiny with every method, relative to RoPE-Mixed, in one process:
``python benchmarks/bench_step.py`` (the same as ``liere bench --case step``).

Forward, backward and AdamW of ViT-Tiny (dim 384, 12 layers, 6 heads, 32x32 images, patch 4) at
batch 32 and 128; the methods run interleaved round by round and the table reports medians and
each step's peak memory. See ``liere.bench.run_step``.
"""

import sys

from liere.bench import main

if __name__ == "__main__":
    sys.exit(main(["--case", "step", *sys.argv[1:]]))

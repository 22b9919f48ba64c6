"""Rotary encodings against their peers in one process: ``python benchmarks/bench_rotary.py --case all``.

A thin wrapper around ``liere.bench`` (also available as ``liere bench``); see
that module for what is timed and how.
"""

import sys

from liere.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

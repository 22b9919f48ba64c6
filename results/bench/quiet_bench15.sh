#!/bin/bash
# Stop 26's second run, nothing else running (2 threads), the same pinned commit as r14 (a0ca66d): the batch-32
# target rows with 31 rounds (r14's 15 rounds had quartiles +-5-8% wide), then the floor count with the tile
# rate's FLOP count corrected (r14's line counted each of the 390 matrices' products 64 times).
# -> step32-20261203-r15.json; log quiet-bench-20261203-r15.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 31 --no-memory \
   --methods rope_axial "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64" \
   --json results/bench/step32-20261203-r15.json
date
$P ${FLOOR:-benchmarks/dense_floor.py}
date

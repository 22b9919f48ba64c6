#!/bin/bash
# Step benchmark with paired ratios (0e26d40), all studies paused: the rows issue 10 left within noise or missed,
# more rounds than before; then Spherical RoPE compiled and eager. Outputs: step32-20261202-r4.json,
# step128-20261202-r4.json, step32-compile-20261202-r4.json; then benchmarks/apply_alternatives.py; log
# quiet-bench-20261202-r4.log.
cd "$(dirname "$0")/../.."
M=("comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared")
date
.venv/bin/liere bench --case step --batch 32 --repeats 9 --no-memory --methods "${M[@]}" --json results/bench/step32-20261202-r4.json
date
.venv/bin/liere bench --case step --batch 128 --repeats 5 --no-memory --methods "${M[@]}" --json results/bench/step128-20261202-r4.json
date
.venv/bin/liere bench --case step --batch 32 --repeats 5 --no-memory --compile --methods "spherical b=3" --json results/bench/step32-compile-20261202-r4.json
date
.venv/bin/python benchmarks/apply_alternatives.py --batch 32 128 --rounds 7 2>&1 | grep -v -i warn
date

#!/bin/bash
# Stop 24's second script, straight after quiet_bench8.sh, nothing else running (2 threads), from a checkout
# pinned to one commit. quiet_bench8's step table has 7 rounds, whose paired ratios spread ±4% (IQR), more
# than the 2–5% targets; this one runs only the target rows (and rope_axial, a row whose rotation costs what
# RoPE-Mixed's does, as a null check) with many more rounds, and then the rotation alone compiled and eager.
#  1. step, batch 32, 31 rounds, no memory pass  -> step32-20261203-r9.json
#  2. step, batch 128, 15 rounds                 -> step128-20261203-r9.json
#  3. rotation_in_step, batch 32 and 128: each block method eager and under torch.compile
#  4. step, batch 32, 7 rounds: LieRE-8, ComRoPE-LD, Spherical and RoPE-Mixed eager and compiled
#     -> step32-compile-20261203-r9.json
# Log: quiet-bench-20261203-r9.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
ROWS=(rope_axial "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared")
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 31 --no-memory --methods "${ROWS[@]}" \
   --json results/bench/step32-20261203-r9.json
date
$P -m liere.cli bench --case step --batch 128 --repeats 15 --no-memory --methods "${ROWS[@]}" \
   --json results/bench/step128-20261203-r9.json
date
$P benchmarks/rotation_in_step.py --rounds 7 --methods none rope_mixed rope_mixed/compiled spherical:3 \
   spherical:3/compiled comrope_ld:4 comrope_ld:4/compiled liere:8 liere:8/compiled
date
$P -m liere.cli bench --case step --batch 32 --repeats 7 --no-memory --compile \
   --methods "liere b=8" "comrope_ld b=4" "spherical b=3" --json results/bench/step32-compile-20261203-r9.json
date

#!/bin/bash
# Stop 26's run, nothing else running (2 threads), pinned checkout: after the kernels' OpenMP build (they ran on
# one thread before), the register-tile products for b = 32-64 (dense LieRE's apply) and the per-matrix
# exponential kernel up to 64x64.
#  1. the whole step table, every row, batch 32 (15 rounds) and 128 (7 rounds), with peak memory;
#  2. the rotation alone inside the step, every block row and dense LieRE, batch 32 and 128;
#  3. the op benchmark (one thread);
#  4. where dense shared LieRE's rotation time goes, and the floor count.
# Outputs: step32-20261203-r14.json, step128-20261203-r14.json, vit-20261203-r14.json;
# log: quiet-bench-20261203-r14.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 15 --json results/bench/step32-20261203-r14.json
date
$P benchmarks/rotation_in_step.py --batch 32 128 --rounds 7 --methods none rope_mixed spherical:3 comrope_ap:4 \
   comrope_ld:4 liere:8 liere:64/shared liere:64
date
$P -m liere.cli bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261203-r14.json
date
$P benchmarks/dense_shared_parts.py --rounds 9
$P benchmarks/dense_floor.py
date
$P -m liere.cli bench --case step --batch 128 --repeats 7 --json results/bench/step128-20261203-r14.json
date

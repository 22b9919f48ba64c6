#!/bin/bash
# Stop 27's second run, nothing else running (2 threads), the library as at 84ca32d (rotations at multiples of
# other positions by products; LieRE's grid rounded once per coordinate): every method's step at batch 32 with
# peak memory (15 rounds), each rotation alone at batch 32 and 128, the op benchmark, the dense floor count, the
# compiled step (7 rounds), and the batch-128 step of the targets' rows only (7 rounds: fewer models in the process
# than r14's 15, whose RoPE-Mixed step faulted 362k pages).
# -> step32-20261203-r18.json, vit-20261203-r18.json, step32-compile-20261203-r18.json, step128-20261203-r18.json;
# log quiet-bench-20261203-r18.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 15 --json results/bench/step32-20261203-r18.json
date
$P benchmarks/rotation_in_step.py --batch 32 128 --rounds 7 --methods none rope_mixed spherical:3 comrope_ap:4 \
   comrope_ld:4 liere:8 liere:64/shared liere:64
date
$P -m liere.cli bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261203-r18.json
date
$P benchmarks/dense_floor.py
date
$P benchmarks/dense_shared_parts.py --rounds 9
date
$P -m liere.cli bench --case step --batch 32 --repeats 7 --compile --methods rope_axial "liere b=8" "liere b=64 shared" \
   --no-memory --json results/bench/step32-compile-20261203-r18.json
date
$P -m liere.cli bench --case step --batch 128 --repeats 7 \
   --methods rope_axial "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64" \
   --json results/bench/step128-20261203-r18.json
date

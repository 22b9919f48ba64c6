#!/bin/bash
# Stop 22's benchmarks, nothing else running on the machine (2 threads):
#  1. the whole step table, every row, batch 32 and 128, with peak memory, as `liere` runs by default
#     (allocator tuned, liere/allocator.py);
#  2. the target rows again with glibc's default allocator (LIERE_MALLOC_TUNE=0), to show what it costs;
#  3. the op benchmark (one thread), twice.
# Outputs: step-20261202-r7.json, step-default-malloc-20261202-r7.json, vit-20261202-r7-run{1,2}.json;
# log: quiet-bench-20261202-r7.log.
cd "$(dirname "$0")/../.."
B=.venv/bin/liere
T=("spherical b=3" "comrope_ap b=4" "comrope_ld b=4" "liere b=8" "liere b=64 shared" "liere b=64")
date
$B bench --case step --batch 32 128 --repeats 7 --json results/bench/step-20261202-r7.json
date
LIERE_MALLOC_TUNE=0 $B bench --case step --batch 32 128 --repeats 7 --no-memory --methods "${T[@]}" \
  --json results/bench/step-default-malloc-20261202-r7.json
date
for run in 1 2; do
  $B bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261202-r7-run$run.json
done
date

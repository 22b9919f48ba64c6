#!/bin/bash
# After the CPU kernels (block apply 30bd20a, 8x8 and 16x16 exponentials 977d490 + the next commit), nothing else running: the op table
# twice, then the whole step at batch 32 (with peak memory) and 128, the block rows also with the kernels off
# ('... no-kernel': the torch ops they replace) in the same interleaved rounds; then the apply alone for 3x3
# and 8x8 blocks.
# Outputs: vit-20261202-r5-run{1,2}.json, step32-20261202-r5.json, step128-20261202-r5.json; log
# quiet-bench-20261202-r5.log.
cd "$(dirname "$0")/../.."
B=.venv/bin/liere
date
for run in 1 2; do
  $B bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261202-r5-run$run.json
  date
done
M=("comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64"
   "comrope_ld b=4 no-kernel" "spherical b=3 no-kernel" "liere b=8 no-kernel")
$B bench --case step --batch 32 --repeats 7 --methods "${M[@]}" --json results/bench/step32-20261202-r5.json
date
$B bench --case step --batch 128 --repeats 4 --no-memory --methods "${M[@]:0:6}" "spherical b=3 no-kernel" "liere b=8 no-kernel" \
  --json results/bench/step128-20261202-r5.json
date
.venv/bin/python benchmarks/apply_alternatives.py --batch 32 128 --rounds 7 -b 3 2>&1 | grep -v -i warn
.venv/bin/python benchmarks/apply_alternatives.py --batch 32 128 --rounds 7 -b 8 2>&1 | grep -v -i warn
date

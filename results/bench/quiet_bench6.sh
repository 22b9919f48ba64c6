#!/bin/bash
# A/B of the CPU kernels in the whole step, more rounds than quiet_bench5.sh (whose 4-7 rounds left the
# kernel/no-kernel difference within noise), nothing else running. Outputs: step32-20261202-r6.json,
# step128-20261202-r6.json; log quiet-bench-20261202-r6.log.
cd "$(dirname "$0")/../.."
B=.venv/bin/liere
M=("spherical b=3" "liere b=8" "spherical b=3 no-kernel" "liere b=8 no-kernel")
date
$B bench --case step --batch 32 --repeats 11 --no-memory --methods "${M[@]}" --json results/bench/step32-20261202-r6.json
date
$B bench --case step --batch 128 --repeats 8 --no-memory --methods "${M[@]}" --json results/bench/step128-20261202-r6.json
date

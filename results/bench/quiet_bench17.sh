#!/bin/bash
# Stop 27's first run, nothing else running (2 threads), at d634051 (rotations at multiples of other positions by
# products): dense LieRE shared by the layers against RoPE-Mixed alone, 61 rounds at batch 32; then the rotation
# alone (rotation_in_step.py) for RoPE-Mixed and both dense forms. -> step32-shared-20261203-r17.json;
# log quiet-bench-20261203-r17.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 61 --no-memory --methods "liere b=64 shared" \
   --json results/bench/step32-shared-20261203-r17.json
date
$P benchmarks/rotation_in_step.py --batch 32 --rounds 9 --methods none rope_mixed liere:64/shared liere:64
date
$P benchmarks/dense_shared_parts.py --rounds 9
date

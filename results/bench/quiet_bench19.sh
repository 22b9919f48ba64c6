#!/bin/bash
# Stop 27's third run, nothing else running (2 threads), at the commit below: r18's step table showed dense
# per-layer LieRE's peak at 1.42x (r14: 1.26x) since rotations at multiples kept their base blocks and an unpadded
# copy for the backward; now only the padded output is kept and prefix tokens come out at the origin. The dense
# and LieRE-8 rows with peak memory, 15 rounds at batch 32. -> step32-dense-20261203-r19.json;
# log quiet-bench-20261203-r19.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 15 \
   --methods rope_axial "liere b=8" "liere b=64 shared" "liere b=64" --json results/bench/step32-dense-20261203-r19.json
date

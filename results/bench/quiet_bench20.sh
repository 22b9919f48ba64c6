#!/bin/bash
# Stop 27's fourth run, nothing else running (2 threads), at d953f84 (the library as at this stop's end): dense
# LieRE shared by the layers against RoPE-Mixed alone, 61 rounds at batch 32, as r17 (before the output-only
# saving and the prefix at the origin). -> step32-shared-20261203-r20.json; log quiet-bench-20261203-r20.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1 | cut -c1-80
date
$P -m liere.cli bench --case step --batch 32 --repeats 61 --no-memory --methods "liere b=64 shared" \
   --json results/bench/step32-shared-20261203-r20.json
date

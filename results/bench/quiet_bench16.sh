#!/bin/bash
# Stop 26's third run, nothing else running (2 threads), at d820ed4 (the library as at a0ca66d): dense LieRE shared
# by the layers against RoPE-Mixed alone, 41 rounds at batch 32, after r14 and r15 read its paired ratio at 1.034
# and 1.056. -> step32-shared-20261203-r16.json; log quiet-bench-20261203-r16.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 41 --no-memory --methods "liere b=64 shared" \
   --json results/bench/step32-shared-20261203-r16.json
date

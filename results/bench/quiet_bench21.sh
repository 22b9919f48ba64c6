#!/bin/bash
# Stop 27's fifth run, nothing else running (2 threads), the library as at d953f84: the batch-128 step of the issue's
# target rows only (7 rounds; r14 ran 15 models in one process and its RoPE-Mixed step faulted 362k pages; r18's
# was killed in a noisy phase), with peak memory. -> step128-20261203-r21.json; log quiet-bench-20261203-r21.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1 | cut -c1-80
date
$P -m liere.cli bench --case step --batch 128 --repeats 7 \
   --methods rope_axial "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64" \
   --json results/bench/step128-20261203-r21.json
date

#!/bin/bash
# Stop 24's fourth script, nothing else running (2 threads), pinned checkout: the batch-32 target rows once more
# with 41 rounds, after 7-round runs put eager LieRE-8 at 1.049-1.060 and the 31-round run (r9) at 1.042.
# -> step32-20261203-r11.json; log quiet-bench-20261203-r11.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 --repeats 41 --no-memory \
   --methods rope_axial "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" \
   --json results/bench/step32-20261203-r11.json
date

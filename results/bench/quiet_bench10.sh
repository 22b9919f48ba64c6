#!/bin/bash
# Stop 24's third script, nothing else running (2 threads), from a checkout pinned to one commit: after the
# planar rotation became a custom operator under torch.compile (CPU), the rotation alone eager and compiled
# for every method (benchmarks/rotation_in_step.py), then the whole step at batch 32 eager and compiled for
# RoPE-Mixed and LieRE-8 (-> step32-compile-20261203-r10.json). Log: quiet-bench-20261203-r10.log. A first run
# (quiet-bench-20261203-r10-recompile-limit.log) hit dynamo's recompile limit: its last two compiled rows at
# batch 128 ran eagerly; rotation_in_step.py and liere bench now raise the limit.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
M=()
for m in rope_mixed rope_axial spherical:3 comrope_ld:4 liere:8; do M+=("$m" "$m/compiled"); done
$P benchmarks/rotation_in_step.py --rounds 7 --methods none "${M[@]}"
date
$P -m liere.cli bench --case step --batch 32 --repeats 7 --no-memory --compile --methods rope_axial "liere b=8" \
   --json results/bench/step32-compile-20261203-r10.json
date

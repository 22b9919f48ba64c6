#!/bin/bash
# Stop 23's benchmarks, nothing else running on the machine (2 threads), from a checkout pinned to one commit:
#  1. the whole step table, every row, batch 32 and 128, with peak memory, as `liere` runs by default
#     (allocator tuned: heap only, liere/allocator.py);
#  2. the rotation alone inside the step (benchmarks/rotation_in_step.py), with the kept-inputs A/B rows;
#  3. the op benchmark (one thread);
#  4. dense LieRE and RoPE-Mixed one model per process (benchmarks/step_alone.py).
# Outputs: step-20261202-r8.json, vit-20261202-r8.json; log: quiet-bench-20261202-r8.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 128 --repeats 7 --json results/bench/step-20261202-r8.json
date
$P benchmarks/rotation_in_step.py --kept-inputs --rounds 9
date
$P -m liere.cli bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261202-r8.json
date
for row in rope_mixed "liere b=64 shared" "liere b=64"; do $P benchmarks/step_alone.py "$row" --tune; done
date

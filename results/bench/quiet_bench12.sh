#!/bin/bash
# Stop 25's benchmarks, nothing else running (2 threads), pinned checkout: dense LieRE after the exponential's
# chunks went from 8 MB to 2 MB (ops/expm.py: a chunk's working set now stays in the 32 MB L3), against RoPE-Mixed.
#  1. the floor count and the batched-product rates (benchmarks/dense_floor.py);
#  2. the step table's dense rows and RoPE-Mixed, batch 32 and 128, with peak memory;
#  3. the rotation alone inside the step, dense per layer and shared, batch 32 and 128;
#  4. one model per process (benchmarks/step_alone.py).
# Outputs: step-dense-20261203-r12.json; log: quiet-bench-20261203-r12.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P benchmarks/dense_floor.py
date
$P -m liere.cli bench --case step --batch 32 128 --repeats 9 \
   --methods "liere b=64 shared" "liere b=64" --json results/bench/step-dense-20261203-r12.json
date
$P benchmarks/rotation_in_step.py --batch 32 128 --rounds 7 --methods none rope_mixed liere:64/shared liere:64
date
for row in rope_mixed "liere b=64 shared" "liere b=64"; do $P benchmarks/step_alone.py "$row" --tune; done
date

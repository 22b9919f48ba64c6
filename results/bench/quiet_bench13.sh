#!/bin/bash
# Stop 25's second run, nothing else running (2 threads), pinned checkout: dense LieRE after per-layer rotations
# (one exponential per layer on the CPU when all layers' generators exceed 32 MB, BlockEncoding._compute) and
# the exponential's 2 MB chunks.
#  1. the step table's dense rows and RoPE-Mixed, batch 32 and 128, with peak memory and faults;
#  2. the rotation alone inside the step, dense per layer and shared, batch 32 and 128;
#  3. one model per process (benchmarks/step_alone.py);
#  4. where dense shared LieRE's rotation time goes (benchmarks/dense_shared_parts.py);
#  5. the chunk-size A/B (benchmarks/expm_chunks.py) and the floor count (benchmarks/dense_floor.py).
# Outputs: step-dense-20261203-r13.json; log: quiet-bench-20261203-r13.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 128 --repeats 9 \
   --methods "liere b=64 shared" "liere b=64" --json results/bench/step-dense-20261203-r13.json
date
$P benchmarks/rotation_in_step.py --batch 32 128 --rounds 7 --methods none rope_mixed liere:64/shared liere:64
date
for row in rope_mixed "liere b=64 shared" "liere b=64"; do $P benchmarks/step_alone.py "$row" --tune; done
date
$P benchmarks/dense_shared_parts.py --rounds 9
$P benchmarks/expm_chunks.py --rounds 7
$P benchmarks/dense_floor.py
date

#!/bin/bash
# Stop 23's benchmarks, nothing else running on the machine (2 threads), from a checkout pinned to one commit:
#  1. the whole step table, every row, batch 32 and 128, with peak memory, as `liere` runs by default
#     (allocator tuned, liere/allocator.py);
#  2. the rotation alone inside the step (benchmarks/rotation_in_step.py), with the kept-inputs A/B rows, and
#     dense LieRE's (shared and per layer) at batch 32;
#  3. the op benchmark (one thread);
#  4. dense LieRE and RoPE-Mixed one model per process (benchmarks/step_alone.py).
# A first run (18:19, allocator heap-only, M_MMAP_MAX=0) was killed by the kernel at 23 GB resident in step 1:
# that setting is not kept. Outputs: step-20261202-r8.json, vit-20261202-r8.json; log: quiet-bench-20261202-r8.log.
cd "$(dirname "$0")/../.."
P=${PYTHON:-.venv/bin/python}
git log --oneline -1
date
$P -m liere.cli bench --case step --batch 32 128 --repeats 7 --json results/bench/step-20261202-r8.json
date
$P benchmarks/rotation_in_step.py --kept-inputs --rounds 9
$P benchmarks/rotation_in_step.py --batch 32 --rounds 5 --methods none rope_mixed liere:64/shared liere:64
date
$P -m liere.cli bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261202-r8.json
date
for row in rope_mixed "liere b=64 shared" "liere b=64"; do $P benchmarks/step_alone.py "$row" --tune; done
date

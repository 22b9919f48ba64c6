#!/bin/bash
# Issue 10 measurements, run with the studies paused (kill -STOP).
cd "$(dirname "$0")/../.."  # the repository root
B=.venv/bin/liere
date
/usr/bin/time -f "step wall %e s" $B bench --case step --batch 32 128 --repeats 3 --methods "comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64" --json /tmp/sc/step.json
date
/usr/bin/time -f "compile wall %e s" $B bench --case step --batch 32 --repeats 3 --compile --no-memory --methods "liere b=8" --json /tmp/sc/step_compile.json
date
for i in 1 2 3; do $B bench --case vit --threads 1 --repeats 11 --json /tmp/sc/vit$i.json | grep -E "rte-axial|liere b=8|rope_mixed|comrope_ld"; done
date

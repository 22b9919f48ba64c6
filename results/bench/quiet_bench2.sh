#!/bin/bash
# Issue 10 measurements after the norm-sorted chunks, the 24-wide groups and the copy-free apply backward;
# run with the studies paused (kill -STOP). Outputs: results/bench/*-20261202-r2.json.
cd "$(dirname "$0")/../.."  # the repository root
B=.venv/bin/liere
OUT=results/bench
ROWS=("comrope_ap b=4" "comrope_ld b=4" "spherical b=3" "liere b=8" "liere b=64 shared" "liere b=64")
date
/usr/bin/time -f "step b32 wall %e s" $B bench --case step --batch 32 --repeats 5 --methods "${ROWS[@]}" --json $OUT/step32-20261202-r2.json
date
/usr/bin/time -f "step b128 wall %e s" $B bench --case step --batch 128 --repeats 5 --methods "${ROWS[@]}" --json $OUT/step128-20261202-r2.json
date
for i in 1 2 3; do $B bench --case vit --threads 1 --repeats 11 --json $OUT/vit-20261202-r2-run$i.json | grep -E "rte-axial|liere b=8|rope_mixed|comrope_ld|spherical"; done
date

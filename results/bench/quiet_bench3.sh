#!/bin/bash
# The op benchmark after the count-sorted squarings (e6c885f), studies paused. Outputs: vit-20261202-r3-run*.json.
cd "$(dirname "$0")/../.."
for i in 1 2 3; do .venv/bin/liere bench --case vit --threads 1 --repeats 11 --json results/bench/vit-20261202-r3-run$i.json | grep -E "rte-axial|liere b=8|rope_mixed|comrope_ld|spherical"; done
date

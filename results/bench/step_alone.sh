#!/bin/bash
# One model per process (as liere train runs), glibc's allocator as it is and tuned; dense LieRE with and
# without transparent huge pages. Log: step-alone-20261202.log.
cd "$(dirname "$0")/../.."
P=.venv/bin/python
for row in rope_mixed "liere b=8" "comrope_ld b=4" "spherical b=3"; do
  $P benchmarks/step_alone.py "$row"
  $P benchmarks/step_alone.py "$row" --tune
done
$P benchmarks/step_alone.py "liere b=64" --tune
THP_MEM_ALLOC_ENABLE=1 $P benchmarks/step_alone.py "liere b=64" --tune

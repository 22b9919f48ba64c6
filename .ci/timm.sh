#!/usr/bin/env bash
# CI, timm job: timm needs torchvision, and the torchvision that installs here pairs with torch 2.14.1,
# not the core job's torch 2.13.0 (the CPU 2.13 wheel cannot load torchvision 0.28's CUDA-linked ops), so
# timm gets its own venv. liere goes in with --no-deps (torch is there).
# Runs the timm integration tests (convert, timm's RoPE models, the README snippets, the fine-tuning
# example; tests/ecosystem/timm), the Hugging Face tests (tests/ecosystem/transformers) and the pairing
# tests against Hugging Face's rotate_half, with ONNX Runtime for the dynamic-size export of a timm model.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
VENV=.ci-venv-timm   # ignored by .gitignore (.ci-venv*/)
start=$(date +%s)

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" timm transformers \
  onnx onnxruntime onnxscript pytest hypothesis
"$VENV/bin/python" -m pip install -q --no-deps -e .
echo "timm install: $(( $(date +%s) - start )) s"

set +e
"$VENV/bin/python" -m pytest tests/ecosystem/timm tests/ecosystem/transformers tests/ecosystem/test_pairing.py \
  -q -p no:cacheprovider
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "CI (timm): pytest collected no tests"; exit 1; fi
echo "timm tests: $(( $(date +%s) - start )) s"
exit "$rc"

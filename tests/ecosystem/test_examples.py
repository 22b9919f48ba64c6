"""The examples run, at a tiny setting, as a user would run them (a fresh interpreter each)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str, python: str = sys.executable) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([python, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_functional_attention():
    out = run_example("functional_attention.py")
    assert "MAE encoder" in out and "KV cache" in out
    # The example prints its own checks against the full rotation.
    diffs = [float(line.rsplit(" ", 1)[-1]) for line in out.splitlines() if "max difference" in line or "within" in line]
    assert diffs and max(diffs) < 1e-5


def test_point_cloud_classifier():
    out = run_example("point_cloud.py", "--steps", "3", "--batch", "8", "--points", "32")
    assert "test accuracy" in out


def test_compiled_vit():
    out = run_example("compile_vit.py", "--backend", "eager", "--steps", "2", "--block-size", "4")
    last = out.strip().splitlines()[-1]
    assert "64x64" in last and int(last.rsplit(" ", 1)[-1]) <= 4


def test_onnx_export():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = run_example("export_onnx.py", "--method", "rope_mixed")
    assert float(out.strip().rsplit(" ", 1)[-1]) < 1e-4

"""The fused Triton kernel, checked on the CPU under the Triton interpreter.

The interpreter is switched on with TRITON_INTERPRET=1, which triton reads at
import time; the checks therefore run in a subprocess so the variable never
leaks into this process or other tests. On a machine with a GPU the same
kernel is picked automatically for CUDA tensors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from liere.ops import apply as apply_mod
from liere.ops import triton_apply
from liere.rotation import Rotation

CHECKS = Path(__file__).with_name("_triton_interpreter_checks.py")


def test_kernel_matches_eager_under_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, str(CHECKS)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "ok:" in proc.stdout


def test_interpreter_flag_does_not_leak():
    assert os.environ.get("TRITON_INTERPRET", "0") != "1"


def test_cpu_tensors_never_take_the_kernel(monkeypatch):
    # Even where triton reports itself available, CPU tensors use the eager path.
    monkeypatch.setattr(triton_apply, "available", lambda: True)
    angles = torch.randn(1, 1, 1, 3, 2)
    rot = Rotation(4, cos=angles.cos(), sin=angles.sin())
    assert not apply_mod._use_triton(torch.randn(1, 1, 3, 4), rot)


def test_falls_back_without_triton(monkeypatch):
    monkeypatch.setattr(triton_apply, "triton", None)
    assert not triton_apply.available()
    angles = torch.randn(1, 1, 1, 3, 2)
    rot = Rotation(4, cos=angles.cos(), sin=angles.sin())
    assert not triton_apply.supports(torch.randn(1, 1, 3, 4), rot)


def test_unsupported_inputs_are_declined():
    u = torch.randn(1, 1, 1, 3, 1, 5, 5)
    assert not triton_apply.supports(torch.randn(1, 1, 3, 5), Rotation(5, blocks=u))  # b = 5
    angles = torch.randn(1, 1, 1, 3, 2)
    rot = Rotation(4, cos=angles.cos(), sin=angles.sin())
    assert not triton_apply.supports(torch.randn(1, 1, 3, 4, dtype=torch.float64), rot)

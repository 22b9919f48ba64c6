import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CIFAR_ARCHIVE = (REPO / ".." / "shared" / "data" / "cifar10-jpg.tgz").resolve()

# A tiny but complete run: 16x16 pointing images, 4x4 patches, a 2-layer 32-wide ViT.
TINY = ["--task", "pointing", "--image-size", "16", "--patch-size", "4", "--dim", "32", "--depth", "2",
        "--num-heads", "2", "--train-samples", "192", "--val-samples", "128", "--batch-size", "32",
        "--progress", "none", "--threads", "1"]


def run_cli(args, cwd, timeout=240, env=None):
    """Run `python -m liere.cli ARGS` in a subprocess; returns CompletedProcess."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run([sys.executable, "-m", "liere.cli", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def tiny_args():
    return list(TINY)

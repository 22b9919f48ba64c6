"""`liere inspect` as installed: a trained run's report, and one-line errors for bad paths."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import TINY


def _liere() -> str:
    exe = Path(sys.executable).with_name("liere")
    found = str(exe) if exe.exists() else shutil.which("liere")
    if not found:
        pytest.skip("the liere command is not installed")
    return found


def _run(args, cwd, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")  # this tree's code, not an installed copy
    return subprocess.run([_liere(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_inspect_a_trained_run(tmp_path):
    run = tmp_path / "run"
    done = _run(["train", *TINY, "--method", "liere", "--block-size", "4", "--max-steps", "4", "--epochs", "1",
                 "--out", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _run(["inspect", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max commutator" in done.stdout and "liere" in done.stdout
    out = run / "inspect"
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "liere" and len(report["layers"]) == 2
    assert len(report["layers"][0]["commutators"]) == 2  # heads
    assert max(report["layers"][0]["relativity_error"]) > 1e-3  # LieRE is not relative
    for name in ("commutators.png", "relativity.png", "frequencies.png"):
        assert (out / name).stat().st_size > 1000
    # A checkpoint file works too, with --out.
    done = _run(["inspect", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "o")], tmp_path)
    assert done.returncode == 0 and (tmp_path / "o" / "report.json").is_file(), done.stderr[-2000:]


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "not_a_checkpoint"])
def test_inspect_bad_paths_are_one_line_errors(kind, tmp_path):
    path = tmp_path / "x"
    if kind == "empty_dir":
        path.mkdir()
    elif kind == "not_a_checkpoint":
        path.write_text("hello")
    done = _run(["inspect", str(path)], tmp_path)
    err = done.stderr.strip()
    assert done.returncode == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("liere inspect: error:") and str(path) in err

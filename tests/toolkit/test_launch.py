"""Launchers: a 2-run sweep on the local pool, submitit's local cluster and a local Ray instance gives the same
results; a submitted sweep is gathered by `liere report`; a killed sweep resubmits only its missing runs; flags
that cannot work together are one-line errors with exit code 2 and nothing written."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liere.cli import main
from liere.launch.options import parse_timeout

from .conftest import TINY, run_cli

HAS_SUBMITIT = importlib.util.find_spec("submitit") is not None
HAS_RAY = importlib.util.find_spec("ray") is not None
needs_submitit = pytest.mark.skipif(not HAS_SUBMITIT, reason="submitit is not installed (liere[submitit])")
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray is not installed (liere[ray])")

# Two runs, one epoch of 2 steps each: the sweep, not the training, is under test.
SWEEP = ["compare", *TINY, "--methods", "rope_axial,absolute", "--seeds", "0", "--epochs", "1", "--train-samples",
         "64", "--val-samples", "64", "--eval-sizes", "16"]


def liere_command(args, cwd, timeout=300):
    """The installed `liere` console script (next to this Python), as a user runs it."""
    script = Path(sys.executable).with_name("liere")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "liere.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_timeout_durations():
    assert parse_timeout("90") == 90 and parse_timeout("90m") == 90 and parse_timeout("4h") == 240
    assert parse_timeout("1h30m") == 90 and parse_timeout("2:30:00") == 150 and parse_timeout("1-00:00:00") == 1440


@pytest.mark.parametrize("argv,names", [
    (["train", "--strategy", "fsdp", "--accelerator", "cpu"], ["--strategy fsdp", "CUDA GPUs only", "ddp"]),
    (["compare", "--strategy", "fsdp"], ["--strategy fsdp", "--accelerator gpu"]),
    (["compare", "--slurm-partition", "gpu"], ["--slurm-partition", "--launcher submitit"]),
    (["study", "grid", "--smoke", "--ray-address", "auto"], ["--ray-address", "--launcher ray"]),
    (["compare", "--gpus-per-run", "1"], ["--gpus-per-run", "submitit or ray"]),
    (["compare", "--num-nodes", "2"], ["--num-nodes 2", "SLURM", "srun"]),
    (["compare", "--launcher", "submitit", "--submitit-cluster", "local", "--devices", "2", "--accelerator", "cpu"],
     ["--devices 2", "SLURM"]),
])
def test_impossible_combinations_are_one_line_errors_before_anything_is_written(argv, names, tmp_path, monkeypatch,
                                                                             capsys):
    if "submitit" in argv and not HAS_SUBMITIT:
        pytest.skip("submitit is not installed")
    monkeypatch.chdir(tmp_path)
    out = [] if argv[0] == "study" else ["--out", "out"]
    assert main(argv + out + ["--progress", "none"] * (argv[0] != "study")) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)
    assert list(tmp_path.iterdir()) == []


def test_missing_engine_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    assert main([*SWEEP, "--launcher", "ray", "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert "ray is not installed" in err and "liere[ray]" in err and not (tmp_path / "out").exists()


def test_installed_command_rejects_fsdp_on_cpu_and_a_missing_slurm(tmp_path):
    fsdp = liere_command(["train", "--strategy", "fsdp", "--accelerator", "cpu", "--out", "run"], tmp_path)
    assert fsdp.returncode == 2 and "Traceback" not in fsdp.stderr and "FSDP" in fsdp.stderr
    slurm = liere_command([*SWEEP, "--launcher", "submitit", "--out", "out"], tmp_path)
    assert slurm.returncode == 2 and len(slurm.stderr.strip().splitlines()) == 1, slurm.stderr
    assert ("no SLURM here" in slurm.stderr and "--submitit-cluster local" in slurm.stderr) if HAS_SUBMITIT \
        else "pip install 'liere[submitit]'" in slurm.stderr
    assert list(tmp_path.iterdir()) == []


# ----- real launches ------------------------------------------------------------------------------
def _runs(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["runs"]


def _same_results(a: Path, b: Path) -> None:
    ra, rb = _runs(a), _runs(b)
    assert [(r["label"], r["seed"]) for r in ra] == [(r["label"], r["seed"]) for r in rb] == \
        [("rope_axial", 0), ("absolute", 0)]
    for x, y in zip(ra, rb):
        assert x["eval"] == y["eval"] and x["steps"] == y["steps"] == 2
        assert [p["val_acc"] for p in x["curve"]] == [p["val_acc"] for p in y["curve"]]
    assert {p.name for p in a.iterdir() if p.is_file()} <= {p.name for p in b.iterdir() if p.is_file()}
    header = (a / "results.csv").read_text().splitlines()[0]
    assert (b / "results.csv").read_text().splitlines()[0] == header


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("local")
    proc = run_cli([*SWEEP, "--out", "out", "--jobs", "2"], cwd, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return cwd / "out"


@pytest.mark.slow
@needs_submitit
def test_submitit_local_cluster_gives_the_local_results(local_sweep, tmp_path):
    proc = liere_command([*SWEEP, "--out", "out", "--launcher", "submitit", "--submitit-cluster", "local", "--wait",
                          "--timeout", "20"], tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "submitted 2 run(s)" in proc.stdout
    _same_results(local_sweep, tmp_path / "out")
    assert not (tmp_path / "out" / "launch.json").exists()  # nothing is left pending
    assert len(list((tmp_path / "out" / "submitit").glob("*/*_log.err"))) == 2  # one job, one log per run


@pytest.mark.slow
@needs_ray
def test_ray_local_instance_gives_the_local_results(local_sweep, tmp_path):
    proc = liere_command([*SWEEP, "--out", "out", "--launcher", "ray", "--jobs", "2"], tmp_path, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sending 2 run(s) to a local Ray instance" in proc.stdout
    _same_results(local_sweep, tmp_path / "out")


def _wait_for_results(run_dirs, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and not all((d / "result.json").is_file() for d in run_dirs):
        time.sleep(1)
    assert all((d / "result.json").is_file() for d in run_dirs), run_dirs


@pytest.mark.slow
@needs_submitit
def test_submitted_sweep_returns_at_once_and_report_gathers_it(tmp_path):
    proc = liere_command([*SWEEP, "--out", "out", "--launcher", "submitit", "--submitit-cluster", "local"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 run(s) pending" in proc.stdout and "liere report out" in proc.stdout
    pending = json.loads((tmp_path / "out" / "launch.json").read_text())["pending"]
    assert [p["label"] for p in pending] == ["rope_axial", "absolute"] and all(p["job"] for p in pending)
    _wait_for_results([tmp_path / p["run_dir"] for p in pending])
    report = liere_command(["report", "out"], tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert len(_runs(tmp_path / "out")) == 2 and (tmp_path / "out" / "summary.md").is_file()
    assert not (tmp_path / "out" / "launch.json").exists()
    # The same command again finds both runs finished and submits nothing.
    again = liere_command([*SWEEP, "--out", "out", "--launcher", "submitit", "--submitit-cluster", "local"], tmp_path)
    assert again.returncode == 0 and "2 of 2 runs already finished" in again.stdout and "submitted" not in again.stdout


@pytest.mark.slow
@needs_submitit
def test_killed_sweep_resubmits_only_the_missing_run(tmp_path):
    args = [*SWEEP, "--out", "out", "--launcher", "submitit", "--submitit-cluster", "local", "--wait"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "liere.cli", *args, "--jobs", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first, second = tmp_path / "out" / "runs" / "rope_axial-seed0", tmp_path / "out" / "runs" / "absolute-seed0"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (first / "result.json").is_file():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running job, as a lost login session or scancel would
    proc.wait()
    assert (first / "result.json").is_file() and not (second / "result.json").exists()
    stamp = (first / "result.json").stat().st_mtime_ns
    resumed = liere_command(args, tmp_path, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "1 of 2 runs already finished" in resumed.stdout and "submitted 1 run(s)" in resumed.stdout
    assert (first / "result.json").stat().st_mtime_ns == stamp  # not run again
    assert [r["label"] for r in _runs(tmp_path / "out")] == ["rope_axial", "absolute"]


STUDY = """
name: tiny
claim: a sweep described as data runs on any launcher
base: {task: pointing, image_size: 16, patch_size: 4, dim: 32, depth: 2, num_heads: 2, train_samples: 64,
       val_samples: 64, batch_size: 32, epochs: 1, threads: 1, progress: none}
methods: [rope_axial, absolute]
seeds: [0]
"""


@pytest.mark.slow
@needs_submitit
@needs_ray
def test_study_submitted_gathered_and_skipped_on_another_launcher(tmp_path):
    (tmp_path / "tiny.yaml").write_text(STUDY)
    args = ["study", "tiny.yaml", "--out", "results/tiny", "--runs-dir", "runs"]
    proc = liere_command([*args, "--launcher", "submitit", "--submitit-cluster", "local"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 run(s) pending" in proc.stdout
    pending = json.loads((tmp_path / "results" / "tiny" / "launch.json").read_text())["pending"]
    _wait_for_results([tmp_path / p["run_dir"] for p in pending])
    report = liere_command(["report", "results/tiny"], tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    runs = _runs(tmp_path / "results" / "tiny")
    assert [r["label"] for r in runs] == ["rope_axial", "absolute"] and all(r["key"] for r in runs)
    assert (tmp_path / "results" / "tiny" / "summary.md").is_file()
    again = liere_command([*args, "--launcher", "ray"], tmp_path)
    assert again.returncode == 0 and "2 runs, 2 already finished" in again.stdout, again.stderr[-2000:]


def test_launch_file_keeps_job_ids_while_pending_and_goes_when_done(tmp_path):
    from types import SimpleNamespace

    from liere.launch import GatherLauncher, Launched
    from liere.launch.sweep import note_launch

    plan = [("rope", SimpleNamespace(out=str(tmp_path / "runs" / "a"), seed=0)),
            ("liere:8", SimpleNamespace(out=str(tmp_path / "runs" / "b"), seed=0))]
    submitter = SimpleNamespace(name="submitit")
    sent = Launched(pending=[0, 1], jobs={0: "101", 1: "102"}, logs={0: "a.err", 1: "b.err"}, where="SLURM")
    assert note_launch(tmp_path, {"kind": "compare"}, submitter, sent, plan)["pending"] == 2
    # `liere report` gathers: run a finished, b is still pending and keeps its job and log.
    left = note_launch(tmp_path, {"kind": "compare"}, GatherLauncher(), Launched(pending=[1]), plan)
    saved = json.loads((tmp_path / "launch.json").read_text())
    assert left["pending"] == 1 and saved["launcher"] == "submitit" and saved["where"] == "SLURM"
    assert saved["pending"] == [{"label": "liere:8", "seed": 0, "run_dir": plan[1][1].out, "job": "102",
                                 "log": "b.err"}]
    note_launch(tmp_path, {"kind": "compare"}, GatherLauncher(), Launched(), plan)
    assert not (tmp_path / "launch.json").exists()

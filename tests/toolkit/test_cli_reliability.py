"""Issue 11 at the command line: every bad flag, config or file value is one line naming it, exit code 2, no
traceback, and nothing is written to the run directory first. Runs the installed `liere` command."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from liere.cli import main
from liere.train.config import ConfigError, config_from, validate

from .conftest import CIFAR_ARCHIVE

# Small enough that a case that is wrongly accepted still finishes quickly (and then fails the test).
QUICK = ["--epochs", "1", "--train-samples", "32", "--val-samples", "32", "--image-size", "16", "--batch-size", "16",
         "--progress", "none", "--threads", "1"]


def liere_command() -> list[str]:
    exe = Path(sys.executable).parent / "liere"
    return [str(exe)] if exe.exists() else [shutil.which("liere") or "liere"]


def run_liere(args, cwd, timeout=180):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*liere_command(), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


class _Done:
    def __init__(self, returncode, stderr, stdout=""):
        self.returncode, self.stderr, self.stdout = returncode, stderr, stdout


def run_in_process(args, cwd, capsys, monkeypatch):
    """``liere ARGS`` through ``liere.cli.main`` in this process: the same code path, without the import cost."""
    monkeypatch.chdir(cwd)
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    captured = capsys.readouterr()
    return _Done(code, captured.err, captured.out)


def assert_one_line_error(proc, *names):
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-2000:], proc.stdout[-500:])
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("liere"), err
    assert "usage:" not in err, err
    for name in names:
        assert name in err, (name, err)
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "empty.txt").write_text("")
    (d / "afile").write_text("hello\n")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 20)
    (d / "empty.json").write_text("{}")
    (d / "list.json").write_text("[1, 2]")
    (d / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (d / "noruns.json").write_text('{"meta": {"task": "pointing"}, "runs": []}')
    (d / "badrun.json").write_text('{"meta": {"task": "pointing", "image_size": 16, "eval_sizes": [16], '
                                   '"seeds": [0]}, "runs": [{"label": "x"}]}')
    (d / "evs.yaml").write_text("eval_sizes: 32\n")
    (d / "lrnan.yaml").write_text("lr: .nan\n")
    (d / "theta.yaml").write_text("method: rope_axial\npe_options: {theta: .inf}\n")
    (d / "aug.yaml").write_text("augment: 3\n")
    (d / "size.yaml").write_text("size: [1]\n")
    (d / "typo.yaml").write_text("epoch: 3\n")
    (d / "list.yaml").write_text("- 1\n")
    (d / "seed.yaml").write_text("seed: 1.5\n")
    (d / "workers.yaml").write_text("num_workers: -2\n")
    (d / "betas.yaml").write_text("betas: 0.9\n")
    (d / "bool.yaml").write_text("share_layers: maybe\n")
    (d / "jitter.yaml").write_text("position_jitter: .nan\n")
    (d / "clip.yaml").write_text("grad_clip: .inf\n")
    (d / "bad.yaml").write_text("lr: [1\n")
    (d / "empty.yaml").write_text("")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00" + bytes(range(256)))
    (d / "nottar.tgz").write_bytes(b"\x1f\x8b" + bytes(300))
    if CIFAR_ARCHIVE.is_file():
        with open(CIFAR_ARCHIVE, "rb") as f:
            (d / "trunc.tgz").write_bytes(f.read(200_000))
    return d


# (arguments, names the message must contain). "{d}" is the folder of the files above.
TRAIN_CASES = [
    (["--augment", "bogus"], ["--augment", "bogus", "randaugment"]),
    (["--strategy", "bogus"], ["--strategy", "bogus", "ddp"]),
    (["--num-workers", "-1"], ["--num-workers", "-1"]),
    (["--lr", "nan"], ["--lr", "nan"]),
    (["--lr", "-inf"], ["--lr"]),
    (["--lr", "0"], ["--lr"]),
    (["--warmup-epochs", "inf"], ["--warmup-epochs"]),
    (["--weight-decay", "-1"], ["--weight-decay"]),
    (["--label-smoothing", "1"], ["--label-smoothing"]),
    (["--position-jitter", "nan"], ["--position-jitter"]),
    (["--val-every", "1.5"], ["--val-every"]),
    (["--train-fraction", "nan"], ["--train-fraction"]),
    (["--accelerator", "gpu"], ["--accelerator", "gpu"]),
    (["--accelerator", "quantum"], ["--accelerator", "quantum"]),
    (["--devices", "0,1"], ["--devices"]),
    (["--devices", "many"], ["--devices", "many"]),
    (["--precision", "8-bit"], ["--precision", "8-bit"]),
    (["--num-registers", "-1"], ["--num-registers"]),
    (["--seed", "-3"], ["--seed"]),
    (["--seed", "x"], ["--seed"]),
    (["--max-steps", "0"], ["--max-steps"]),
    (["--epochs", "1.5"], ["--epochs"]),
    (["--pool", "max"], ["--pool", "max"]),
    (["--convention", "pixels"], ["--convention", "pixels"]),
    (["--logger", "wandb"], ["--logger", "wandb"]),
    (["--progress", "bar"], ["--progress", "bar"]),
    (["--share-layers", "maybe"], ["--share-layers"]),
    (["--dim", "30", "--num-heads", "4"], ["--dim", "30"]),
    (["--method", "rope"], ["--method", "rope", "pointing"]),
    (["--method", "absolute", "--block-size", "8"], ["--block-size", "absolute"]),
    (["--method", "none", "--block-size", "4"], ["--block-size", "none"]),
    (["--method", "spherical", "--block-size", "4"], ["--block-size", "spherical"]),
    (["--task", "moving", "--method", "rope"], ["--method", "rope", "moving"]),
    (["--nosuchflag"], ["--nosuchflag"]),
    (["--config", "{d}/evs.yaml"], ["--eval-sizes", "32"]),
    (["--config", "{d}/lrnan.yaml"], ["--lr", "nan"]),
    (["--config", "{d}/theta.yaml"], ["theta", "rope_axial"]),
    (["--config", "{d}/aug.yaml"], ["--augment"]),
    (["--config", "{d}/size.yaml"], ["--size"]),
    (["--config", "{d}/typo.yaml"], ["epoch"]),
    (["--config", "{d}/list.yaml"], ["--config", "list.yaml"]),
    (["--config", "{d}/seed.yaml"], ["--seed", "1.5"]),
    (["--config", "{d}/workers.yaml"], ["--num-workers"]),
    (["--config", "{d}/betas.yaml"], ["--betas"]),
    (["--config", "{d}/bool.yaml"], ["--share-layers"]),
    (["--config", "{d}/jitter.yaml"], ["--position-jitter"]),
    (["--config", "{d}/clip.yaml"], ["--grad-clip"]),
    (["--config", "{d}/bad.yaml"], ["--config", "bad.yaml", "YAML"]),
    (["--config", "{d}/empty.yaml"], ["--config", "empty.yaml", "empty"]),
    (["--config", "{d}/binary.yaml"], ["--config", "binary.yaml"]),
    (["--task", "text", "--data-root", "{d}/empty.txt"], ["--data-root", "empty.txt", "empty"]),
    (["--task", "text", "--data-root", "{d}"], ["--data-root"]),
    (["--task", "cifar10", "--archive", "{d}/binary.bin"], ["--archive", "binary.bin", "tar"]),
    (["--task", "cifar10", "--archive", "{d}/empty.txt"], ["--archive", "empty.txt"]),
    (["--task", "cifar10", "--archive", "{d}/nottar.tgz"], ["--archive", "nottar.tgz"]),
    (["--task", "cifar10", "--archive", "{d}"], ["--archive"]),
    (["--task", "imagefolder", "--data-root", "{d}/binary.bin"], ["--data-root", "binary.bin"]),
    (["--out", "{d}/afile"], ["--out", "afile", "is a file"]),
    (["--out", "{d}/afile/run"], ["--out", "afile"]),
    (["--resume"], ["--resume", "--out"]),
    (["--resume", "{d}/binary.bin"], ["--resume", "binary.bin"]),
    (["--resume", "{d}/empty.txt"], ["--resume", "empty.txt"]),
]


# The issue's own examples, run through the installed command; all of TRAIN_CASES also run in-process below.
SUBPROCESS = {"--augment bogus", "--strategy bogus", "--num-workers -1", "--lr nan", "--accelerator gpu",
              "--config {d}/evs.yaml", "--task text --data-root {d}/empty.txt", "--out {d}/afile",
              "--method rope", "--method absolute --block-size 8", "--method spherical --block-size 4",
              "--task cifar10 --archive {d}/binary.bin", "--config {d}/theta.yaml", "--nosuchflag"}


def _train_case(args, names, files, tmp_path, runner):
    out = tmp_path / "run"
    args = [a.replace("{d}", str(files)) for a in args]
    extra = [] if "--out" in args or "--resume" in args else ["--out", str(out)]
    proc = runner(["train", *QUICK, *args, *extra])
    assert_one_line_error(proc, *names)
    assert not out.exists(), "a run directory was written before the error"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args,names", TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_train_bad_input_is_one_line(args, names, files, tmp_path, capsys, monkeypatch):
    _train_case(args, names, files, tmp_path, lambda argv: run_in_process(argv, tmp_path, capsys, monkeypatch))


SUB_CASES = [(a, n) for a, n in TRAIN_CASES if " ".join(a) in SUBPROCESS]


@pytest.mark.parametrize("args,names", SUB_CASES, ids=[" ".join(a) for a, _ in SUB_CASES])
def test_train_bad_input_installed_command(args, names, files, tmp_path):
    _train_case(args, names, files, tmp_path, lambda argv: run_liere(argv, tmp_path))


def test_subprocess_cases_exist():
    assert len(SUB_CASES) == len(SUBPROCESS)


def test_truncated_archive(files, tmp_path):
    if not (files / "trunc.tgz").is_file():
        pytest.skip("no CIFAR archive to truncate")
    out = tmp_path / "run"
    proc = run_liere(["train", *QUICK, "--task", "cifar10", "--archive", str(files / "trunc.tgz"), "--out", str(out)],
                     tmp_path)
    assert_one_line_error(proc, "--archive", "trunc.tgz")
    assert not out.exists()


COMPARE_CASES = [
    (["--methods", "liere:1"], ["--methods"]),
    (["--methods", "rope_axial,nope"], ["--methods", "nope"]),
    (["--methods", "rope"], ["rope", "pointing"]),
    (["--seeds", "-1"], ["--seeds"]),
    (["--target-accuracy", "nan"], ["--target-accuracy"]),
    (["--target-accuracy", "2"], ["--target-accuracy"]),
    (["--train-fraction", "0,0.5"], ["--train-fraction"]),
    (["--train-fraction", "inf"], ["--train-fraction"]),
    (["--jobs", "0"], ["--jobs"]),
    (["--out", "{d}/afile"], ["--out", "afile"]),
    (["--augment", "sideways"], ["--augment", "sideways"]),
    (["--task", "cifar10", "--archive", "{d}/binary.bin"], ["--archive"]),
]


@pytest.mark.parametrize("args,names", COMPARE_CASES, ids=[" ".join(a) for a, _ in COMPARE_CASES])
def test_compare_bad_input_is_one_line(args, names, files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    args = [a.replace("{d}", str(files)) for a in args]
    extra = [] if "--out" in args else ["--out", str(out)]
    proc = run_in_process(["compare", *QUICK, "--methods", "rope_axial", *args, *extra] if "--methods" not in args
                          else ["compare", *QUICK, *args, *extra], tmp_path, capsys, monkeypatch)
    assert_one_line_error(proc, *names)
    assert not out.exists()


REPORT_CASES = [
    (["{d}/empty.json"], ["empty.json"]),
    (["{d}/list.json"], ["list.json"]),
    (["{d}/binary.json"], ["binary.json"]),
    (["{d}/noruns.json"], ["noruns.json"]),
    (["{d}/badrun.json"], ["badrun.json"]),
    (["{d}/binary.bin"], ["binary.bin"]),
    (["{d}/nothere.json"], ["nothere.json"]),
    (["{d}"], ["results.json"]),
    (["{d}/empty.json", "--target-accuracy", "nan"], ["--target-accuracy"]),
]


@pytest.mark.parametrize("args,names", REPORT_CASES, ids=[" ".join(a) for a, _ in REPORT_CASES])
def test_report_bad_input_is_one_line(args, names, files, tmp_path, capsys, monkeypatch):
    args = [a.replace("{d}", str(files)) for a in args]
    assert_one_line_error(run_in_process(["report", *args], tmp_path, capsys, monkeypatch), *names)


@pytest.mark.parametrize("name", ["empty.json", "binary.json"])
def test_report_bad_results_installed_command(name, files, tmp_path):
    assert_one_line_error(run_liere(["report", str(files / name)], tmp_path), name)


@pytest.mark.parametrize("args,names", [
    (["nonexistent-study"], ["nonexistent-study"]),
    ([], ["study"]),
    (["grid", "--out", "{d}/afile"], ["--out", "afile"]),
    (["grid", "--jobs", "0"], ["--jobs"]),
])
def test_study_bad_input_is_one_line(args, names, files, tmp_path, capsys, monkeypatch):
    args = [a.replace("{d}", str(files)) for a in args]
    assert_one_line_error(run_in_process(["study", *args], tmp_path, capsys, monkeypatch), *names)


def test_unknown_command_is_one_line(tmp_path, capsys, monkeypatch):
    assert_one_line_error(run_in_process(["trian"], tmp_path, capsys, monkeypatch), "trian")


# ----- the same checks without a subprocess: every float field, every non-finite value ---------------------------
FLOAT_FIELDS = ["lr", "weight_decay", "warmup_epochs", "min_lr_ratio", "label_smoothing", "drop_path",
                "position_jitter", "grad_clip", "train_fraction", "val_every"]


@given(name=st.sampled_from(FLOAT_FIELDS), value=st.sampled_from([math.nan, math.inf, -math.inf, "0.1", None, [1.0]]))
def test_validate_rejects_non_finite_floats_by_name(name, value):
    if name == "grad_clip" and value is None:  # None: no clipping
        return
    with pytest.raises(ConfigError, match="^--" + name.replace("_", "-") + ":"):
        validate(config_from({name: value}))


INT_FIELDS = ["epochs", "batch_size", "num_nodes", "context_length", "image_size", "train_samples", "val_samples",
              "dim", "depth", "num_heads", "block_size", "threads", "checkpoint_every_n_steps", "num_workers",
              "num_registers", "seed", "data_seed", "max_steps"]


@given(name=st.sampled_from(INT_FIELDS), value=st.sampled_from([-5, 1.5, "3", True, math.nan]))
def test_validate_rejects_bad_integers_by_name(name, value):
    with pytest.raises(ConfigError, match="^--" + name.replace("_", "-") + ":"):
        validate(config_from({name: value}))


@pytest.mark.parametrize("args,names", [
    (["--bogus"], ["--bogus"]),
    (["--repeats", "0"], ["--repeats"]),
    (["--threads", "-1"], ["--threads"]),
    (["--device", "banana"], ["--device", "banana"]),
    (["--case", "nope"], ["--case", "nope"]),
])
def test_bench_bad_input_is_one_line(args, names, tmp_path, capsys, monkeypatch):
    assert_one_line_error(run_in_process(["bench", *args], tmp_path, capsys, monkeypatch), *names)

"""Resume never loses work: it continues from the newest checkpoint that loads (and says which), or stops with a
one-line error before touching the run directory. Covers a missing, a truncated and a corrupt last.ckpt."""

import json
import os
import shutil
import signal

import pytest
import torch

from liere.train.checkpoint import resolve_resume
from liere.train.config import ConfigError

from .conftest import TINY
from .test_cli_reliability import assert_one_line_error, run_liere


# ----- which checkpoint: unit tests on fake checkpoints ----------------------------------------------------------
def _fake(path, step):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "global_step": step}, path)


def test_last_is_preferred_when_it_loads(tmp_path):
    _fake(tmp_path / "checkpoints" / "last.ckpt", 8)
    _fake(tmp_path / "checkpoints" / "best.ckpt", 6)
    point = resolve_resume(tmp_path, "auto")
    assert point.path.endswith("last.ckpt") and point.step == 8 and point.skipped == ()


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt", "empty", "not-a-checkpoint"])
def test_falls_back_to_the_newest_other_checkpoint(tmp_path, damage):
    ckpts = tmp_path / "checkpoints"
    _fake(ckpts / "last.ckpt", 12)
    _fake(ckpts / "best.ckpt", 6)
    _fake(ckpts / "step9.ckpt", 9)
    last = ckpts / "last.ckpt"
    if damage == "missing":
        last.unlink()
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "corrupt":
        last.write_bytes(os.urandom(4000))
    elif damage == "empty":
        last.write_bytes(b"")
    else:
        torch.save([1, 2, 3], last)
    point = resolve_resume(tmp_path, "auto")
    assert point.path.endswith("step9.ckpt") and point.step == 9
    assert point.skipped and point.skipped[0].startswith("last.ckpt")
    text = point.describe(tmp_path)
    assert "checkpoints/step9.ckpt (step 9)" in text and "skipped last.ckpt" in text


def test_no_checkpoint_that_loads_is_an_error(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    (ckpts / "last.ckpt").write_bytes(os.urandom(100))
    (ckpts / "best.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"--resume: no checkpoint of .* loads: last.ckpt .*best.ckpt"):
        resolve_resume(tmp_path, "auto")


def test_nothing_to_resume(tmp_path):
    assert resolve_resume(tmp_path, "auto") is None  # a study's first attempt at a run starts afresh
    with pytest.raises(ConfigError, match="--resume: .* has no checkpoint to resume from"):
        resolve_resume(tmp_path, "auto", required=True)
    assert resolve_resume(tmp_path, None) is None


def test_explicit_checkpoint_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="--resume: checkpoint .* does not exist"):
        resolve_resume(tmp_path, str(tmp_path / "x.ckpt"))
    (tmp_path / "x.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match="--resume: checkpoint .*x.ckpt cannot be used: corrupt or truncated"):
        resolve_resume(tmp_path, str(tmp_path / "x.ckpt"))
    with pytest.raises(ConfigError, match="is not a file"):
        resolve_resume(tmp_path, str(tmp_path))


# ----- end to end, through the installed command -----------------------------------------------------------------
ARGS = TINY + ["--method", "rope_axial", "--epochs", "2", "--seed", "1", "--augment", "none", "--val-every", "0.5",
               "--checkpoint-every-n-steps", "4"]


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run SIGKILLed at step 9: last.ckpt at step 8, best.ckpt at a validation (step 3 or 6), logs/version_0."""
    d = tmp_path_factory.mktemp("killed")
    proc = run_liere(["train", *ARGS, "--out", str(d / "run"), "--kill-at-step", "9"], d, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    ckpts = d / "run" / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 8
    assert torch.load(ckpts / "best.ckpt", weights_only=False)["global_step"] in (3, 6)
    return d / "run"


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _snapshot(run):
    """Every file of the run directory with its bytes, to prove a failed resume changed nothing."""
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_resume_continues_from_best_when_last_is_unusable(killed_run, tmp_path, damage):
    run = _copy(killed_run, tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    best_step = torch.load(run / "checkpoints" / "best.ckpt", weights_only=False)["global_step"]
    if damage == "missing":
        last.unlink()
    else:
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    proc = run_liere(["train", "--out", str(run), "--resume"], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = " ".join(proc.stdout.split())
    assert f"resuming from checkpoints/best.ckpt (step {best_step})" in said, said
    assert "skipped last.ckpt" in said and ("missing" in said if damage == "missing" else "truncated" in said)
    result = json.loads((run / "result.json").read_text())
    assert result["resumed_from"].endswith("best.ckpt")
    assert result["steps"] == 12
    # The curve of the interrupted run is kept up to the checkpoint, then continued: not restarted at step 0.
    steps = [p["step"] for p in result["curve"]]
    assert steps == sorted(steps) and steps[0] == 3 and steps[-1] == 12 and len(steps) == 4, steps


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "empty"])
def test_resume_with_no_usable_checkpoint_changes_nothing(killed_run, tmp_path, damage):
    run = _copy(killed_run, tmp_path)
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    (run / "result.json").write_text('{"an": "earlier result"}')
    best.unlink()
    if damage == "corrupt":
        last.write_bytes(os.urandom(last.stat().st_size))
    elif damage == "truncated":
        last.write_bytes(last.read_bytes()[:1000])
    else:
        last.write_bytes(b"")
    before = _snapshot(run)
    proc = run_liere(["train", "--out", str(run), "--resume"], tmp_path)
    assert_one_line_error(proc, "--resume", "last.ckpt")
    assert _snapshot(run) == before  # config.yaml, logs/version_*, result.json: all as they were
    assert sorted(p.name for p in (run / "logs").iterdir()) == ["version_0"]


def test_resume_with_a_different_model_changes_nothing(killed_run, tmp_path):
    run = _copy(killed_run, tmp_path)
    before = _snapshot(run)
    proc = run_liere(["train", "--out", str(run), "--resume", "--dim", "64"], tmp_path)
    assert_one_line_error(proc, "--resume", "different model")
    assert _snapshot(run) == before


def test_resume_of_an_empty_run_directory_is_an_error(tmp_path):
    (tmp_path / "run").mkdir()
    proc = run_liere(["train", *TINY, "--out", str(tmp_path / "run"), "--resume"], tmp_path)
    assert_one_line_error(proc, "--resume", "no checkpoint")
    assert list((tmp_path / "run").iterdir()) == []

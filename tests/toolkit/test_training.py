"""Training: learning, exact resume after SIGKILL mid-epoch, DDP on CPU, atomic checkpoints, the LR schedule."""

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from liere.train import TrainConfig, fit
from liere.train.checkpoint import atomic_torch_save
from liere.train.data import ResumableSampler
from liere.train.module import cosine_lr

from .conftest import TINY, run_cli


def tiny_config(tmp_path, **kw):
    base = dict(task="pointing", image_size=16, patch_size=4, dim=32, depth=2, num_heads=2, train_samples=192,
                val_samples=128, batch_size=32, progress="none", threads=1, logger="none", out=str(tmp_path / "run"))
    base.update(kw)
    return TrainConfig(**base)


def test_cosine_schedule_values():
    # Warmup ramps linearly to 1, cosine ends at min_ratio, halfway is the mean of the two.
    assert cosine_lr(0, 110, 10, 0.1) == pytest.approx(0.1)
    assert cosine_lr(9, 110, 10, 0.1) == pytest.approx(1.0)
    assert cosine_lr(10, 110, 10, 0.1) == pytest.approx(1.0)
    assert cosine_lr(60, 110, 10, 0.1) == pytest.approx(0.55)
    assert cosine_lr(110, 110, 10, 0.1) == pytest.approx(0.1)


def test_sampler_is_a_seeded_permutation_sharded_by_global_batch():
    single = ResumableSampler(12, seed=5, world_size=1, batch_size=4).order(3)
    assert sorted(single) == list(range(12))
    assert single == ResumableSampler(12, seed=5, world_size=1, batch_size=4).order(3)  # deterministic
    assert single != ResumableSampler(12, seed=5, world_size=1, batch_size=4).order(4)  # new epoch, new order
    r0, r1 = (ResumableSampler(12, seed=5, rank=r, world_size=2, batch_size=2).order(3) for r in (0, 1))
    # Global batch k of 2 ranks x 2 = single-process batch k of 4.
    for k in range(3):
        assert sorted(r0[2 * k : 2 * k + 2] + r1[2 * k : 2 * k + 2]) == sorted(single[4 * k : 4 * k + 4])
    s = ResumableSampler(12, seed=5, world_size=1, batch_size=4)
    s.skip_epoch, s.skip = 3, 8
    s.set_epoch(3)
    assert list(s) == single[8:] and list(s) == single  # the skip applies to one iteration only


def test_short_run_learns(tmp_path):
    """A short run on 64 pointing scenes: the loss falls and the model fits its training set above chance.

    (Generalising on this relational task takes thousands of steps; see the demo. What a few-second
    test can show is that the whole pipeline -- data, augmentation, schedule, checkpoint -- trains.)
    """
    from liere.train.data import build_split
    from liere.train.module import LieRETask
    from liere.train.run import evaluate

    cfg = tiny_config(tmp_path, method="rope_mixed", epochs=25, lr=3e-3, train_samples=64, val_samples=64,
                      augment="none", warmup_epochs=2, eval_sizes=[24], batch_size=16)
    r = fit(cfg)
    curve = r["curve"]
    assert len(curve) == 25 and curve[-1]["step"] == 100
    assert curve[-1]["train_loss"] < 0.7 * curve[0]["train_loss"]
    assert r["final_point"]["val_acc"] == pytest.approx(r["val_acc"], abs=1e-6)
    assert set(r["eval"]) == {"16", "24"} and r["eval"]["24"]["n"] == 64
    for name in ("config.yaml", "result.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (tmp_path / "run" / name).is_file(), name
    module = LieRETask.load_from_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    train_set, _ = build_split(cfg, "train", num_samples=64)
    assert evaluate(module, train_set)["acc"] >= 0.75


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    """Kill -9 mid-epoch (3 steps after the last checkpoint), resume, and land on exactly the same model."""
    args = ["train"] + TINY + ["--method", "liere", "--block-size", "4", "--epochs", "2", "--seed", "3", "--augment", "flip",
                   "--checkpoint-every-n-steps", "4", "--logger", "none"]
    full = run_cli(args + ["--out", str(tmp_path / "full")], tmp_path)
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run_cli(args + ["--out", str(tmp_path / "cut"), "--kill-at-step", "11"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["global_step"] == 8  # 6 steps per epoch: step 8 is in the middle of epoch 1
    assert not (tmp_path / "cut" / "result.json").exists()
    # Only --out and --resume: the run's saved config.yaml supplies everything else.
    resumed = run_cli(["train", "--out", str(tmp_path / "cut"), "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "saved config" in resumed.stdout
    a = json.loads((tmp_path / "full" / "result.json").read_text())
    b = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert b["resumed_from"].endswith("last.ckpt") and a["steps"] == b["steps"] == 12
    assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
    assert b["val_acc"] == pytest.approx(a["val_acc"], abs=1e-5)
    assert [p["step"] for p in a["curve"]] == [p["step"] for p in b["curve"]]
    for p, q in zip(a["curve"], b["curve"]):
        assert q["val_loss"] == pytest.approx(p["val_loss"], abs=1e-5)
        assert q["train_loss"] == pytest.approx(p["train_loss"], abs=1e-5)
    wa = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    wb = torch.load(last, weights_only=False)["state_dict"]
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], atol=1e-6, rtol=0, msg=k)


def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    """DDP (gloo) on 2 CPU processes with batch 16 each = one process with batch 32 (same data, same steps)."""
    common = ["train"] + TINY + ["--method", "rope_axial", "--epochs", "1", "--augment", "none", "--logger", "none",
                     "--no-checkpoints", "--accelerator", "cpu", "--val-samples", "100"]
    ddp = run_cli(common + ["--devices", "2", "--strategy", "ddp", "--batch-size", "16", "--out",
                            str(tmp_path / "ddp")], tmp_path, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one = run_cli(common + ["--out", str(tmp_path / "one")], tmp_path)
    assert one.returncode == 0, one.stderr[-2000:]
    a = json.loads((tmp_path / "ddp" / "result.json").read_text())
    b = json.loads((tmp_path / "one" / "result.json").read_text())
    assert a["steps"] == b["steps"] == 6
    # Validation is sharded without padding and summed: exactly the 100 items.
    assert a["final_point"]["val_loss"] == pytest.approx(b["final_point"]["val_loss"], abs=2e-4)
    assert a["val_loss"] == pytest.approx(b["val_loss"], abs=2e-4)


def test_atomic_save_keeps_previous_checkpoint_on_crash(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1, "w": torch.arange(4.0)}, path)

    def crashing_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_torch_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was removed


def test_sigkill_during_checkpoint_write_leaves_last_good_one(tmp_path):
    """A process killed with SIGKILL halfway through writing a checkpoint: the previous one still loads."""
    script = textwrap.dedent(f"""
        import os, signal, torch
        from liere.train.checkpoint import AtomicCheckpointIO
        io = AtomicCheckpointIO()
        path = {str(tmp_path / 'last.ckpt')!r}
        io.save_checkpoint({{"global_step": 1, "w": torch.ones(1000)}}, path)
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            f.write(b"x" * 1000); f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = dying_save
        io.save_checkpoint({{"global_step": 2, "w": torch.zeros(1000)}}, path)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ckpt = torch.load(tmp_path / "last.ckpt")
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["w"], torch.ones(1000))


def test_text_lm_run_and_length_generalisation(tmp_path):
    """`liere train --task text`: a byte-level LM trains, and is evaluated at 1x and 2x its context."""
    cfg = tiny_config(tmp_path, task="text", method="rope", context_length=32, eval_sizes=[64], train_samples=256,
                      val_samples=32, epochs=2, batch_size=16, lr=3e-3, image_size=None, data_options={"max_chars": 200_000})
    r = fit(cfg)
    assert r["train_size"] == 32 and set(r["eval"]) == {"32", "64"}
    assert r["eval"]["32"]["n"] == 32 * 32 and r["eval"]["64"]["n"] == 32 * 64  # tokens scored
    # Bytes have 256 values: an untrained model sits at ln(256) = 5.55 nats; this one has learned the byte statistics.
    assert r["curve"][0]["train_loss"] > r["curve"][-1]["train_loss"]
    assert r["val_loss"] < 4.0 and r["val_acc"] > 0.15


def test_compiled_training_matches_eager_and_reports_its_compile_time(tmp_path):
    """``compile: true`` trains the same model (to rounding) and reports the first step's wall time; its
    checkpoint keys are the eager model's (the compiled wrapper is not part of the state dict)."""
    kw = dict(method="liere", block_size=8, depth=1, train_samples=64, val_samples=32, epochs=1, eval_sizes=[16])
    eager = fit(tiny_config(tmp_path / "eager", **kw))
    compiled = fit(tiny_config(tmp_path / "compiled", compile=True, **kw))
    assert eager["compile_s"] is None and compiled["compile_s"] > 0
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], abs=1e-4)
    keys = torch.load(tmp_path / "compiled" / "run" / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert not any("_orig_mod" in k for k in keys)

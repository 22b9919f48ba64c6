"""A short CIFAR-10 run from the JPEG archive shared with the project (skipped when it is absent)."""

import time

import pytest

from liere.train import TrainConfig, fit

from .conftest import CIFAR_ARCHIVE

pytestmark = pytest.mark.skipif(not CIFAR_ARCHIVE.is_file(), reason=f"{CIFAR_ARCHIVE} not present")


def test_cifar10_short_run_learns(tmp_path):
    t0 = time.perf_counter()
    cfg = TrainConfig(task="cifar10", archive=str(CIFAR_ARCHIVE), image_size=32, patch_size=4, size="micro",
                      method="rope_mixed", train_samples=3000, val_samples=1000, epochs=2, batch_size=64, lr=2e-3,
                      warmup_epochs=0.3, augment="flip", progress="none", logger="none", checkpoints=False, threads=1,
                      out=str(tmp_path / "c10"), eval_sizes=[48])
    r = fit(cfg)
    elapsed = time.perf_counter() - t0
    print(f"CIFAR-10 short run: val acc {r['eval']['32']['acc']:.3f} (48px: {r['eval']['48']['acc']:.3f}), "
          f"{r['steps']} steps, {elapsed:.0f} s")
    assert r["params"] < 300_000 and r["steps"] == 2 * 47
    assert r["eval"]["32"]["n"] == 1000
    assert r["curve"][-1]["train_loss"] < r["curve"][0]["train_loss"]
    assert r["eval"]["32"]["acc"] > 0.22  # chance is 0.10

"""The timm fine-tuning example, at a tiny setting (timm CI job)."""

import pytest

pytest.importorskip("timm")

from ..test_examples import run_example  # noqa: E402


def test_timm_finetune_example():
    out = run_example("timm_finetune.py", "--steps", "3", "--batch", "8", "--depth", "2")
    assert "accuracy at 32x32" in out and "accuracy at 48x48" in out

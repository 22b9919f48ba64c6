"""The README's timm and Hugging Face snippets run as written (timm CI job)."""

import contextlib
import io
import pathlib
import re

import pytest

timm = pytest.importorskip("timm")

README = pathlib.Path(__file__).resolve().parents[3] / "README.md"


def snippet(after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def run(code: str, scope: dict) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)  # noqa: S102
    return out.getvalue()


def test_finetune_a_pretrained_rope_vit_with_liere_and_the_hugging_face_snippet():
    import torch

    torch.manual_seed(0)
    scope: dict = {}
    out = run(snippet("**Fine-tune a pretrained RoPE ViT with LieRE.**"), scope)
    print(out)
    assert float(out.split("tensor(")[1].split(")")[0]) < 1e-5, out
    assert scope["logits"].shape == (2, 10)
    pe = scope["model"].liere_pe.pe
    assert pe.name == "liere" and pe.upper.grad.abs().sum() > 0
    pytest.importorskip("transformers")
    out = run(snippet("**Hugging Face transformers.**"), scope)
    assert "torch.Size([2, 10])" in out
